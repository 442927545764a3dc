-- Fold one block of invoice lines into customer state, atomically with its source offset.
-- Same rules as segmenter.features.CustomerState.apply (feature spec v1).
--
-- ARGV[1] key prefix, ARGV[2] "topic:partition", ARGV[3] last offset of the block,
-- ARGV[4..6] the writer's lease: lock value, epoch and expected write count ('' for an
-- unfenced store: tests and tools), then 9 values per line: offset, event_id, kind (P purchase, R return, I ignored),
-- customer_id, invoice_no (the ignore reason for kind I), quantity, amount (micro-pounds,
-- |quantity| * unit price), invoice time (epoch seconds), and the event id's bucket in
-- seen:<bucket> ('' for a prefix that keeps its ids in the one set 'seen').
-- Returns {applied, duplicates, stale}.
local p = ARGV[1]
-- The fence: refuse, before any write, a writer whose lease the store no longer honours.
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
  redis.call('INCR', p .. 'writes')
end
local offsets = p .. 'offsets'
local stored = tonumber(redis.call('HGET', offsets, ARGV[2]) or '-1')
local last = tonumber(ARGV[3])
local seen = p .. 'seen'
-- Record an event id as applied; false if it already was.
local function first_delivery(id, bucket)
  if bucket == '' then return redis.call('SADD', seen, id) == 1 end
  return redis.call('HSETNX', seen .. ':' .. bucket, id, '') == 1
end
local agg, order = {}, {}
local ignored = {}
local applied, dup, stale = 0, 0, 0
local wm = nil
local n = #ARGV
local i = 7
while i <= n do
  if tonumber(ARGV[i]) <= stored then
    stale = stale + 1
  elseif not first_delivery(ARGV[i + 1], ARGV[i + 8]) then
    dup = dup + 1
  else
    applied = applied + 1
    local kind = ARGV[i + 2]
    local ts = tonumber(ARGV[i + 7])
    if wm == nil or ts > wm then wm = ts end
    if kind == 'I' then
      local reason = ARGV[i + 4]
      ignored[reason] = (ignored[reason] or 0) + 1
    else
      local cid = ARGV[i + 3]
      local a = agg[cid]
      if a == nil then
        -- revenue, lines, units, returned, returned_units, new invoices, first, last
        a = {0, 0, 0, 0, 0, 0, false, false}
        agg[cid] = a
        order[#order + 1] = cid
      end
      local qty = tonumber(ARGV[i + 5])
      local amount = tonumber(ARGV[i + 6])
      if kind == 'P' then
        a[1] = a[1] + amount
        a[2] = a[2] + 1
        a[3] = a[3] + qty
        if redis.call('SADD', p .. 'ci:' .. cid, ARGV[i + 4]) == 1 then a[6] = a[6] + 1 end
        if not a[7] or ts < a[7] then a[7] = ts end
        if not a[8] or ts > a[8] then a[8] = ts end
      else
        a[4] = a[4] + amount
        a[5] = a[5] - qty
      end
    end
  end
  i = i + 9
end

-- Lua numbers are doubles: block sums stay far below 2^53, and '%.0f' writes them as integers.
local base = 0
if #order > 0 then base = redis.call('INCRBY', p .. 'pending_n', #order) - #order end
for k, cid in ipairs(order) do
  local a = agg[cid]
  local key = p .. 'c:' .. cid
  if a[2] > 0 then
    redis.call('HINCRBY', key, 'rev', string.format('%.0f', a[1]))
    redis.call('HINCRBY', key, 'lines', a[2])
    redis.call('HINCRBY', key, 'units', string.format('%.0f', a[3]))
    if a[6] > 0 then redis.call('HINCRBY', key, 'inv', a[6]) end
    local cur = redis.call('HMGET', key, 'first', 'last')
    if not cur[1] or a[7] < tonumber(cur[1]) then redis.call('HSET', key, 'first', a[7]) end
    if not cur[2] or a[8] > tonumber(cur[2]) then redis.call('HSET', key, 'last', a[8]) end
    redis.call('SADD', p .. 'customers', cid)
  end
  if a[5] > 0 then
    redis.call('HINCRBY', key, 'rrev', string.format('%.0f', a[4]))
    redis.call('HINCRBY', key, 'runits', string.format('%.0f', a[5]))
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
return {applied, dup, stale}
