package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts run atomically on the shard that holds the topic's keys (they
// share one hash tag). Each topic has:
//
//	{prefix:topic}:seq      the last Seq handed out (string integer)
//	{prefix:topic}:epoch    the epoch of seq and of everything stored
//	{prefix:topic}:stream   the history: a stream capped by count and age,
//	                        one entry per message, field "m" = the record
//	{prefix:topic}:snap     the snapshot: hash of key -> record
//	{prefix:topic}:idem:ID  the position published for idempotency key ID,
//	                        expiring after the idempotency window
//
// and the channel {prefix:topic} carries each record live.
//
// A missing seq or epoch key means the topic's lineage is lost (never
// published, flushed, evicted): the next publish starts a new epoch and
// drops whatever stream and snapshot were left of the old one.

// publishScript assigns the next position, stores and publishes one
// message.
//
// KEYS: seq, epoch, stream, snap[, idem]
// ARGV: new epoch, body, key ("" for none), history size, history age in
// ms (0: no age limit), idempotency window in ms, channel.
// Returns {1, "epoch seq"} for a new message, or {0, "epoch seq"} with the
// position first published under the idempotency key.
var publishScript = goredis.NewScript(`
if #KEYS == 5 then
	local prev = redis.call('GET', KEYS[5])
	if prev then
		return {0, prev}
	end
end
local epoch = redis.call('GET', KEYS[2])
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
	epoch = ARGV[1]
	redis.call('SET', KEYS[2], epoch)
	redis.call('SET', KEYS[1], 0)
	redis.call('DEL', KEYS[3], KEYS[4])
end
local pos = epoch .. ' ' .. string.format('%d', redis.call('INCR', KEYS[1]))
local rec = pos .. ' ' .. ARGV[2]
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], '*', 'm', rec)
local age = tonumber(ARGV[5])
if age > 0 then
	local now = redis.call('TIME')
	local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age
	if cutoff > 0 then
		redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d', cutoff))
	end
end
if ARGV[3] ~= '' then
	redis.call('HSET', KEYS[4], ARGV[3], rec)
end
if #KEYS == 5 then
	redis.call('SET', KEYS[5], pos, 'PX', ARGV[6])
end
redis.call('PUBLISH', ARGV[7], rec)
return {1, pos}
`)

// historyScript reads the messages after a position, together with the
// topic's position.
//
// KEYS: seq, epoch, stream
// ARGV: epoch and Seq of the position to read after.
// Returns {epoch, seq, complete (0 or 1), record...}; epoch is "" when the
// topic has no lineage.
var historyScript = goredis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
local seq = redis.call('GET', KEYS[1])
if not epoch or not seq then
	return {'', '0', 0}
end
local after = tonumber(ARGV[2])
if after ~= 0 and ARGV[1] ~= epoch then
	return {epoch, seq, 0}
end
local n = tonumber(seq) - after
if n < 0 or n > redis.call('XLEN', KEYS[3]) then
	return {epoch, seq, 0}
end
local out = {epoch, seq, 1}
if n == 0 then
	return out
end
local entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', n)
for i = #entries, 1, -1 do
	out[#out + 1] = entries[i][2][2]
end
return out
`)

// snapshotScript reads the snapshot together with the position it
// corresponds to.
//
// KEYS: seq, epoch, snap
// Returns {epoch, seq, record...}; epoch is "" when the topic has no
// lineage.
var snapshotScript = goredis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
local seq = redis.call('GET', KEYS[1])
if not epoch or not seq then
	return {'', '0'}
end
local out = {epoch, seq}
for _, rec in ipairs(redis.call('HVALS', KEYS[3])) do
	out[#out + 1] = rec
end
return out
`)
