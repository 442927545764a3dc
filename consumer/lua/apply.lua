-- Fold one block of invoice lines into customer state, atomically with its source offset.
-- Same rules as segmenter.features.CustomerState.apply (feature spec v1).
--
-- ARGV[1] key prefix, ARGV[2] "topic:partition", ARGV[3] last offset of the block,
-- ARGV[4..6] the writer's lease: lock value, epoch and expected write count ('' for an
-- unfenced store: tests and tools), ARGV[7] the dedupe retention in days (0: keep every
-- id), ARGV[8] how many buckets and invoice sets this call may visit to forget what is
-- past the retention (see prune), ARGV[9] the lines, as one flat MessagePack array (read
-- into the table L) of 11 values per line: offset, event_id, kind (P purchase, R return, I
-- ignored), customer_id, invoice_no (the ignore reason for kind I), quantity, the amount
-- in micro-pounds (|quantity| * unit price) as hi and lo with
-- amount = hi * 10^9 + lo, invoice time (epoch seconds), the event id's CRC-32 (which picks
-- its bucket seen:<n>, see Buckets; '' for a prefix that keeps its ids in the one set
-- 'seen'), and the line's content fingerprint (below 2^32).
--
-- All or nothing. A first pass only reads: it sorts lines into stale, beyond the retention
-- (dated before the cutoff day, see below), duplicate (an applied event_id with the same
-- content), conflicting (an applied event_id with other content) and new, and checks that
-- no running sum would leave the 64-bit range. If any line is refused, nothing is written
-- and the script returns {'refused', offset, reason, event_id, customer or cutoff day, ...};
-- the caller dead-letters those lines and applies the block again without them. Otherwise
-- it writes and returns {applied, duplicates, stale}.
--
-- Retention. Each bucket seen:<n> is a sorted set of applied ids, scored by
-- day * 2^32 + fingerprint (day: the line's invoice day, in epoch days), so its oldest ids
-- come first; each customer's purchase invoices are the sorted set ci:<id>, scored by the
-- latest day of their lines. The cutoff day is the watermark's day minus the retention,
-- and never moves back (the 'cutoff' field of 'retention' holds the highest one used). A
-- line dated before it is refused ('beyond_retention'): its id may be forgotten already.
-- So what is dated before the cutoff can be forgotten, and each call forgets some: it
-- visits buckets, then customers' invoice sets, from where the last call stopped, up to a
-- number of visits (see prune); a visit is one ZREMRANGEBYSCORE, whose cost is what it
-- removes. State written before retention existed (buckets as hashes of bare
-- fingerprints, invoices as plain sets) is read as it is, and rewritten as sorted sets
-- stamped with the watermark's day when next written or visited: no line of theirs is
-- later than that, so they expire no sooner than they should.
--
-- Buckets. The ids are spread over buckets by linear hashing, so that each stays a small,
-- compact sorted set however many ids the retention holds. The hash 'seen_buckets' holds
-- the layout: n (N, the first writer's count, then doubled by each round), split (s, below
-- N) and held (the ids held in all). An id of CRC-32 h is in bucket h mod N, or h mod 2N
-- when that is below s. When the ids pass LOAD per bucket, bucket s is split: its ids of
-- h mod 2N = s + N move to bucket s + N, s moves on, and at N the round ends (N doubles, s
-- is 0). Each split rewrites both buckets whole, so a bucket that grew past Redis's compact
-- size becomes compact again. A call's splits read at most twice its new ids plus
-- SPLIT_READS ids (and at least one bucket), so no call grows long: a prefix far past its
-- size catches up over many calls. A prefix of the release before holds a plain count
-- there (N, never split): it is read as such, and this script's first write turns it into
-- the hash, which that release cannot read: it stops with WRONGTYPE rather than look ids
-- up in the wrong buckets.
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
local DAY = 86400
local P32 = 4294967296 -- 2^32: day * P32 + fingerprint stays below 2^53, exact in a double
local offsets = p .. 'offsets'
local stored = tonumber(redis.call('HGET', offsets, ARGV[2]) or '-1')
local last = tonumber(ARGV[3])
local seen = p .. 'seen'
local ret = p .. 'retention'
local keep_days = tonumber(ARGV[7])
local budget = tonumber(ARGV[8])
local L = cmsgpack.unpack(ARGV[9])
local FIRST = 1
local WIDTH = 11
local LOAD = 40
local SPLIT_READS = 16384

-- The bucket layout (see Buckets); nb is 0 for a prefix with the one set 'seen'.
local layout = p .. 'seen_buckets'
local layout_type = redis.call('TYPE', layout)['ok']
local nb, split, held_stored = 0, 0, nil
local raw_layout = ''
if layout_type == 'hash' then
  local v = redis.call('HMGET', layout, 'n', 'split', 'held')
  raw_layout = 'n=' .. tostring(v[1] or '(none)')
  if v[2] then raw_layout = raw_layout .. ' split=' .. v[2] end
  nb, split, held_stored = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '')
elseif layout_type == 'string' then
  raw_layout = redis.call('GET', layout)
  nb = tonumber(raw_layout)
elseif layout_type ~= 'none' then
  nb, raw_layout = nil, 'a ' .. layout_type
end
-- Nothing is trusted for sitting in Redis: a layout the buckets cannot follow is refused.
local function whole(x) return x ~= nil and x >= 0 and x == math.floor(x) and x < 2 ^ 40 end
if not (whole(nb) and whole(split) and (split < nb or split == 0)) then
  return redis.error_reply('INSIDERS_LAYOUT ' .. layout .. ' is not a bucket layout (' .. raw_layout .. ')')
end
if not whole(held_stored) then held_stored = nil end -- counted again
local layout_changed = false
if nb == 0 and (L[FIRST + 9] or '') ~= '' then
  -- The caller read a bucket count that is gone: the prefix was emptied since.
  return redis.error_reply('INSIDERS_DIVERGED epoch')
end

-- The bucket key of an id of CRC-32 `h` (a decimal string).
local function bucket_key(h)
  local n = tonumber(h)
  local b = n % nb
  if b < split then b = n % (2 * nb) end
  return seen .. ':' .. string.format('%.0f', b)
end

-- The cutoff day: lines dated before it are refused. nil: no cutoff (yet).
local wm0 = tonumber(redis.call('GET', p .. 'watermark') or '-1')
local rstate = redis.call('HMGET', ret, 'cutoff', 'oldest', 'pass', 'next', 'scan', 'pmin')
local function cutoff_for(wm)
  local cut = tonumber(rstate[1] or '')
  if keep_days > 0 and wm >= 0 then
    local moving = math.floor(wm / DAY) - keep_days
    if cut == nil or moving > cut then cut = moving end
  end
  return cut
end
local cutoff = cutoff_for(wm0)

-- hi * 10^9 + lo as a decimal string (hi, lo: non-negative integers held exactly).
local function exact(hi, lo)
  local carry = math.floor(lo / E9)
  lo = lo - carry * E9
  hi = hi + carry
  if hi == 0 then return string.format('%.0f', lo) end
  return string.format('%.0f%09.0f', hi, lo)
end

-- Whether a redis.pcall answered WRONGTYPE: a key still in its format from before
-- retention (any other error is raised).
local function old_format(answer)
  if type(answer) == 'table' and answer.err then
    if string.find(answer.err, 'WRONGTYPE', 1, true) then return true end
    error(answer.err)
  end
  return false
end

-- The fingerprint an event id was first applied with: nil if never, '' if not recorded.
local function applied_as(id, h)
  if h == '' then
    if redis.call('SISMEMBER', seen, id) == 1 then return '' end
    return nil
  end
  local key = bucket_key(h)
  local got = redis.pcall('ZSCORE', key, id)
  if old_format(got) then got = redis.call('HGET', key, id) end -- a bare fingerprint
  if got == false then return nil end
  return tonumber(got) % P32
end

-- Pass 1: read and sort.
local fresh = {} -- argument index of each new line, in order
local within = {} -- event id -> fingerprint, for repeats inside this block
local refused = {}
local dup, stale = 0, 0
local n = #L
local i = FIRST
while i <= n do
  if tonumber(L[i]) <= stored then
    stale = stale + 1
  elseif cutoff ~= nil and math.floor(tonumber(L[i + 8]) / DAY) < cutoff then
    refused[#refused + 1] = string.format('%.0f', L[i])
    refused[#refused + 1] = 'beyond_retention'
    refused[#refused + 1] = L[i + 1]
    refused[#refused + 1] = string.format('%.0f', cutoff)
  else
    local id, fp = L[i + 1], tonumber(L[i + 10])
    local before = within[id]
    if before == nil then before = applied_as(id, L[i + 9]) end
    if before == nil then
      within[id] = fp
      fresh[#fresh + 1] = i
    elseif before == '' or before == fp then
      dup = dup + 1
    else
      refused[#refused + 1] = string.format('%.0f', L[i])
      refused[#refused + 1] = 'conflicting_duplicate'
      refused[#refused + 1] = id
      refused[#refused + 1] = ''
    end
  end
  i = i + WIDTH
end

-- Sums per customer: revenue hi, lo, lines, units, returned hi, lo, returned units,
-- invoices (number -> latest day), first, last, and the argument indexes of the customer's
-- lines.
local agg, order = {}, {}
local ignored = {}
local wm = nil
local fresh_min = nil -- the earliest invoice day among the new lines
for _, j in ipairs(fresh) do
  local kind = L[j + 2]
  local ts = tonumber(L[j + 8])
  if wm == nil or ts > wm then wm = ts end
  local day = math.floor(ts / DAY)
  if fresh_min == nil or day < fresh_min then fresh_min = day end
  if kind == 'I' then
    local reason = L[j + 4]
    ignored[reason] = (ignored[reason] or 0) + 1
  else
    local cid = L[j + 3]
    local a = agg[cid]
    if a == nil then
      a = {0, 0, 0, 0, 0, 0, 0, {}, false, false, {}}
      agg[cid] = a
      order[#order + 1] = cid
    end
    local qty = tonumber(L[j + 5])
    local hi, lo = tonumber(L[j + 6]), tonumber(L[j + 7])
    if kind == 'P' then
      a[1] = a[1] + hi
      a[2] = a[2] + lo
      a[3] = a[3] + 1
      a[4] = a[4] + qty
      local invoice = L[j + 4]
      if a[8][invoice] == nil or day > a[8][invoice] then a[8][invoice] = day end
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
      refused[#refused + 1] = string.format('%.0f', L[j])
      refused[#refused + 1] = 'out_of_range'
      refused[#refused + 1] = L[j + 1]
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
if #fresh > 0 then redis.call('INCR', p .. 'revision') end

-- The day stamped on ids and invoices written before retention existed (see the top).
local stamp_day = nil
if wm0 >= 0 then stamp_day = math.floor(wm0 / DAY) elseif wm ~= nil then
  stamp_day = math.floor(wm / DAY)
end

-- Rewrite a key of the format before retention as a sorted set: a bucket's hash of bare
-- fingerprints, or a customer's plain set of invoices. Bounded by that one key's size.
local function convert(key)
  local kind = redis.call('TYPE', key)['ok']
  local members, scores = {}, {}
  if kind == 'hash' then
    local all = redis.call('HGETALL', key)
    for k = 1, #all, 2 do
      members[#members + 1] = all[k]
      scores[#scores + 1] = string.format('%.0f', stamp_day * P32 + tonumber(all[k + 1]))
    end
  elseif kind == 'set' then
    members = redis.call('SMEMBERS', key)
    for k = 1, #members do scores[k] = stamp_day end
  end
  redis.call('DEL', key)
  for k = 1, #members, 500 do
    local args = {}
    for m = k, math.min(k + 499, #members) do
      args[#args + 1] = scores[m]
      args[#args + 1] = members[m]
    end
    redis.call('ZADD', key, unpack(args))
  end
end

-- A command on a sorted set that may still be in the old format (converted first).
local function zcall(command, key, ...)
  local answer = redis.pcall(command, key, ...)
  if old_format(answer) then
    convert(key)
    answer = redis.call(command, key, ...)
  end
  return answer
end

-- The size of a bucket, in either format.
local function bucket_size(key)
  local size = redis.pcall('ZCARD', key)
  if old_format(size) then size = redis.call('HLEN', key) end
  return size
end

-- The count of ids held (see Buckets): counted once, on a prefix written before it was kept.
local held, counted = nil, false
if nb > 0 then
  held = held_stored
  if held == nil then
    held, counted = 0, true
    for b = 0, nb + split - 1 do held = held + bucket_size(seen .. ':' .. b) end
  end
end
local held_before = held
local added = 0

for _, j in ipairs(fresh) do
  local h = L[j + 9]
  if h == '' then
    redis.call('SADD', seen, L[j + 1])
  else
    local day = math.floor(tonumber(L[j + 8]) / DAY)
    local score = string.format('%.0f', day * P32 + tonumber(L[j + 10]))
    added = added + zcall('ZADD', bucket_key(h), score, L[j + 1])
  end
end

local base = 0
if #order > 0 then base = redis.call('INCRBY', p .. 'pending_n', #order) - #order end
for k, cid in ipairs(order) do
  local a = agg[cid]
  local key = p .. 'c:' .. cid
  if a[3] > 0 then
    local new_invoices = 0
    for invoice, day in pairs(a[8]) do
      if zcall('ZADD', p .. 'ci:' .. cid, 'GT', day, invoice) == 1 then
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
local wm1 = wm0
if wm ~= nil and wm > wm0 then
  redis.call('SET', p .. 'watermark', string.format('%.0f', wm))
  wm1 = wm
end
if last > stored then redis.call('HSET', offsets, ARGV[2], string.format('%.0f', last)) end

-- Retention: forget, a bounded amount at a time, what lies before the cutoff.
-- 'retention' fields: cutoff (the highest cutoff day used), oldest (no id or invoice held
-- is dated before it; NONE: nothing held; absent on a prefix written before retention),
-- and while a pass is under way: pass, next (the next bucket), scan (the SSCAN cursor of
-- 'customers', once every bucket is done), pmin (the earliest day seen held in this pass).
local NONE = 1e9
local changed = {}
local function set(field, value)
  changed[#changed + 1] = field
  changed[#changed + 1] = string.format('%.0f', value)
end
local oldest = tonumber(rstate[2] or '')
if oldest == nil and wm0 >= 0 then oldest = -1 end -- held before retention: unknown
local pass = rstate[3] == '1'
local pmin = tonumber(rstate[6] or '') or NONE
if fresh_min ~= nil then
  if oldest == nil or fresh_min < oldest then
    oldest = fresh_min
    set('oldest', oldest)
  end
  if pass and fresh_min < pmin then pmin = fresh_min end
end
local cut = cutoff_for(wm1)
if keep_days > 0 and cut ~= nil and cut ~= tonumber(rstate[1] or '') then set('cutoff', cut) end

-- Forget what one sorted set (a bucket, or a customer's invoices) holds from before the
-- cutoff, and note the earliest day it still holds; returns how many it forgot.
local function forget(key, scale)
  local gone = zcall('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%.0f', cut * scale))
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local day = math.floor(tonumber(first[2]) / scale)
    if day < pmin then pmin = day end
  end
  return gone
end

-- One step of a pass: up to `visits` buckets, then customers' invoice sets. A pass starts
-- when something held may be dated before the cutoff, and ends by writing the earliest day
-- still held as 'oldest'.
local function prune(visits)
  local buckets = nb + split
  local nxt, scan = 0, '0'
  if pass then
    nxt, scan = tonumber(rstate[4] or '0'), rstate[5] or '0'
  else
    pass, pmin = true, (fresh_min or NONE)
  end
  while visits > 0 and nxt < buckets do
    held = held - forget(seen .. ':' .. nxt, P32)
    visits = visits - 1
    nxt = nxt + 1
  end
  local done = false
  while visits > 0 and nxt >= buckets do
    local page = redis.call('SSCAN', p .. 'customers', scan, 'COUNT', 100)
    scan = page[1]
    for _, cid in ipairs(page[2]) do
      forget(p .. 'ci:' .. cid, 1)
    end
    visits = visits - #page[2] - 1
    if scan == '0' then
      done = true
      break
    end
  end
  if done then
    pass = false
    oldest = pmin
    set('oldest', oldest)
    redis.call('HDEL', ret, 'pass', 'next', 'scan', 'pmin')
  else
    set('next', nxt)
    changed[#changed + 1] = 'scan'
    changed[#changed + 1] = scan
    set('pmin', pmin)
    set('pass', 1)
  end
end

if keep_days > 0 and cut ~= nil and (pass or (oldest ~= nil and oldest < cut)) then
  prune(budget)
elseif pass and fresh_min ~= nil then
  set('pmin', pmin)
end
if #changed > 0 then redis.call('HSET', ret, unpack(changed)) end

-- Growth (see Buckets).
local CRC = nil
local function crc32(text)
  if CRC == nil then
    CRC = {}
    for k = 0, 255 do
      local c = k
      for _ = 1, 8 do
        if bit.band(c, 1) == 1 then c = bit.bxor(0xEDB88320, bit.rshift(c, 1)) else
          c = bit.rshift(c, 1)
        end
      end
      CRC[k] = c
    end
  end
  local c = 0xFFFFFFFF
  for k = 1, #text do
    c = bit.bxor(CRC[bit.band(bit.bxor(c, string.byte(text, k)), 0xFF)], bit.rshift(c, 8))
  end
  return bit.bxor(c, 0xFFFFFFFF) % P32 -- bit works on signed 32-bit numbers
end

local function zadd_all(key, pairs_)
  for k = 1, #pairs_, 1000 do
    redis.call('ZADD', key, unpack(pairs_, k, math.min(k + 999, #pairs_)))
  end
end

local function split_next()
  local from, to = seen .. ':' .. split, seen .. ':' .. (split + nb)
  local all = zcall('ZRANGE', from, 0, -1, 'WITHSCORES')
  local stay, move = {}, {}
  for k = 1, #all, 2 do
    local side = stay
    if crc32(all[k]) % (2 * nb) ~= split then side = move end
    side[#side + 1] = all[k + 1]
    side[#side + 1] = all[k]
  end
  redis.call('DEL', from, to)
  zadd_all(from, stay)
  zadd_all(to, move)
  split = split + 1
  if split == nb then nb, split = 2 * nb, 0 end
  layout_changed = true
end

if held ~= nil then
  held = held + added
  local reads, first = 2 * added + SPLIT_READS, true
  while held > LOAD * (nb + split) do
    local size = bucket_size(seen .. ':' .. split)
    if size > reads and not first then break end
    split_next()
    reads, first = reads - size, false
  end
  if counted or held ~= held_before or layout_changed or layout_type ~= 'hash' then
    if layout_type ~= 'hash' then redis.call('DEL', layout) end
    redis.call('HSET', layout, 'n', nb, 'split', split, 'held', string.format('%.0f', held))
  end
end
return {#fresh, dup, stale}
