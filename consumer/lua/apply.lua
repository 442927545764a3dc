-- Fold one block of invoice lines into customer state, atomically with its source offset.
-- Same rules as segmenter.features.CustomerState.apply (feature spec v1).
--
-- ARGV[1] key prefix, ARGV[2] "topic:partition", ARGV[3] last offset of the block,
-- ARGV[4..6] the writer's lease: lock value, epoch and expected write count ('' for an
-- unfenced store: tests and tools), then 11 values per line: offset, event_id, kind
-- (P purchase, R return, I ignored), customer_id, invoice_no (the ignore reason for kind I),
-- quantity, the amount in micro-pounds (|quantity| * unit price) as hi and lo with
-- amount = hi * 10^9 + lo, invoice time (epoch seconds), the event id's bucket in
-- seen:<bucket> ('' for a prefix that keeps its ids in the one set 'seen'), and the line's
-- content fingerprint.
--
-- All or nothing. A first pass only reads: it sorts lines into stale, duplicate (an applied
-- event_id with the same content), conflicting (an applied event_id with other content) and
-- new, and checks that no running sum would leave the 64-bit range. If any line is refused,
-- nothing is written and the script returns {'refused', offset, reason, event_id, customer,
-- ...}; the
-- caller dead-letters those lines and applies the block again without them. Otherwise it
-- writes and returns {applied, duplicates, stale}.
--
-- Money is exact: Lua numbers are doubles, exact only below 2^53, so amounts are summed as two
-- parts that each stay far below it, and written as decimal strings that Redis adds as 64-bit
-- integers.
local p = ARGV[1]
-- The fence: refuse, before anything, a writer whose lease the store no longer honours.
if ARGV[4] ~= '' then
  if redis.call('GET', p .. 'epoch') ~= ARGV[5] then
    return redis.error_reply('INSIDERS_DIVERGED epoch')
  end
  if redis.call('GET', p .. 'writer') ~= ARGV[4] then
    return redis.error_reply('INSIDERS_DIVERGED writer')
  end
  if tonumber(redis.call('GET', p .. 'writes') or '-1') ~= tonumber(ARGV[6]) then
    return redis.error_reply('INSIDERS_DIVERGED writes')
  end
end
local E9 = 1000000000
local LIMIT = 9.0e18 -- below 2^63 - 1 by far more than a double's error at this size
local offsets = p .. 'offsets'
local stored = tonumber(redis.call('HGET', offsets, ARGV[2]) or '-1')
local last = tonumber(ARGV[3])
local seen = p .. 'seen'
local WIDTH = 11

-- hi * 10^9 + lo as a decimal string (hi, lo: non-negative integers held exactly).
local function exact(hi, lo)
  local carry = math.floor(lo / E9)
  lo = lo - carry * E9
  hi = hi + carry
  if hi == 0 then return string.format('%.0f', lo) end
  return string.format('%.0f%09.0f', hi, lo)
end

-- The content an event id was first applied with: nil if never, '' if not recorded.
local function applied_as(id, bucket)
  if bucket == '' then
    if redis.call('SISMEMBER', seen, id) == 1 then return '' end
    return nil
  end
  local got = redis.call('HGET', seen .. ':' .. bucket, id)
  if got == false then return nil end
  return got
end

-- Pass 1: read and sort.
local fresh = {} -- argument index of each new line, in order
local within = {} -- event id -> fingerprint, for repeats inside this block
local refused = {}
local dup, stale = 0, 0
local n = #ARGV
local i = 7
while i <= n do
  if tonumber(ARGV[i]) <= stored then
    stale = stale + 1
  else
    local id, fp = ARGV[i + 1], ARGV[i + 10]
    local before = within[id]
    if before == nil then before = applied_as(id, ARGV[i + 9]) end
    if before == nil then
      within[id] = fp
      fresh[#fresh + 1] = i
    elseif before == '' or before == fp then
      dup = dup + 1
    else
      refused[#refused + 1] = ARGV[i]
      refused[#refused + 1] = 'conflicting_duplicate'
      refused[#refused + 1] = id
      refused[#refused + 1] = ''
    end
  end
  i = i + WIDTH
end

-- Sums per customer: revenue hi, lo, lines, units, returned hi, lo, returned units,
-- new invoices, first, last, and the argument indexes of the customer's lines.
local agg, order = {}, {}
local ignored = {}
local wm = nil
for _, j in ipairs(fresh) do
  local kind = ARGV[j + 2]
  local ts = tonumber(ARGV[j + 8])
  if wm == nil or ts > wm then wm = ts end
  if kind == 'I' then
    local reason = ARGV[j + 4]
    ignored[reason] = (ignored[reason] or 0) + 1
  else
    local cid = ARGV[j + 3]
    local a = agg[cid]
    if a == nil then
      a = {0, 0, 0, 0, 0, 0, 0, {}, false, false, {}}
      agg[cid] = a
      order[#order + 1] = cid
    end
    local qty = tonumber(ARGV[j + 5])
    local hi, lo = tonumber(ARGV[j + 6]), tonumber(ARGV[j + 7])
    if kind == 'P' then
      a[1] = a[1] + hi
      a[2] = a[2] + lo
      a[3] = a[3] + 1
      a[4] = a[4] + qty
      a[8][ARGV[j + 4]] = true
      if not a[9] or ts < a[9] then a[9] = ts end
      if not a[10] or ts > a[10] then a[10] = ts end
    else
      a[5] = a[5] + hi
      a[6] = a[6] + lo
      a[7] = a[7] - qty
    end
    a[11][#a[11] + 1] = j
  end
end

-- The 64-bit check: a customer whose sums would leave the range gets this block's lines
-- refused (they are far beyond any real history: see consumer.records for the bounds).
for _, cid in ipairs(order) do
  local a = agg[cid]
  local cur = redis.call('HMGET', p .. 'c:' .. cid, 'rev', 'units', 'rrev', 'runits')
  local over = (tonumber(cur[1] or '0') + a[1] * E9 + a[2] > LIMIT)
    or (tonumber(cur[2] or '0') + a[4] > LIMIT)
    or (tonumber(cur[3] or '0') + a[5] * E9 + a[6] > LIMIT)
    or (tonumber(cur[4] or '0') + a[7] > LIMIT)
  if over then
    for _, j in ipairs(a[11]) do
      refused[#refused + 1] = ARGV[j]
      refused[#refused + 1] = 'out_of_range'
      refused[#refused + 1] = ARGV[j + 1]
      refused[#refused + 1] = cid
    end
  end
end

if #refused > 0 then
  table.insert(refused, 1, 'refused')
  return refused
end

-- Pass 2: write.
if ARGV[4] ~= '' then redis.call('INCR', p .. 'writes') end
for _, j in ipairs(fresh) do
  local bucket = ARGV[j + 9]
  if bucket == '' then
    redis.call('SADD', seen, ARGV[j + 1])
  else
    redis.call('HSET', seen .. ':' .. bucket, ARGV[j + 1], ARGV[j + 10])
  end
end
local base = 0
if #order > 0 then base = redis.call('INCRBY', p .. 'pending_n', #order) - #order end
for k, cid in ipairs(order) do
  local a = agg[cid]
  local key = p .. 'c:' .. cid
  if a[3] > 0 then
    local new_invoices = 0
    for invoice in pairs(a[8]) do
      if redis.call('SADD', p .. 'ci:' .. cid, invoice) == 1 then
        new_invoices = new_invoices + 1
      end
    end
    redis.call('HINCRBY', key, 'rev', exact(a[1], a[2]))
    redis.call('HINCRBY', key, 'lines', a[3])
    redis.call('HINCRBY', key, 'units', string.format('%.0f', a[4]))
    if new_invoices > 0 then redis.call('HINCRBY', key, 'inv', new_invoices) end
    local cur = redis.call('HMGET', key, 'first', 'last')
    if not cur[1] or a[9] < tonumber(cur[1]) then redis.call('HSET', key, 'first', a[9]) end
    if not cur[2] or a[10] > tonumber(cur[2]) then redis.call('HSET', key, 'last', a[10]) end
    redis.call('SADD', p .. 'customers', cid)
  end
  if a[7] > 0 then
    redis.call('HINCRBY', key, 'rrev', exact(a[5], a[6]))
    redis.call('HINCRBY', key, 'runits', string.format('%.0f', a[7]))
  end
  redis.call('ZADD', p .. 'pending', 'NX', base + k, cid)
end
for reason, count in pairs(ignored) do
  redis.call('HINCRBY', p .. 'ignored', reason, count)
end
if wm ~= nil then
  local cur = tonumber(redis.call('GET', p .. 'watermark') or '-1')
  if wm > cur then redis.call('SET', p .. 'watermark', string.format('%.0f', wm)) end
end
if last > stored then redis.call('HSET', offsets, ARGV[2], string.format('%.0f', last)) end
return {#fresh, dup, stale}
