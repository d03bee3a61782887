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
//	{prefix:topic}:idem     idempotency keys: hash of ID -> "epoch seq"
//	{prefix:topic}:idemexp  when each ID is forgotten: sorted set of ID,
//	                        scored by Unix milliseconds
//	{prefix:topic}:final    present while the topic's last publish was final
//
// and the channel {prefix:topic} carries each record live.
//
// Every key has a TTL. A publish sets seq, epoch and snap to the topic's
// TTL (IdleTTL, or FinalTTL for a final publish), the stream to HistoryAge
// (or the TTL when shorter), and the idempotency keys to the TTL when it
// writes them or the publish is final. A read sets seq, epoch and snap back
// to IdleTTL unless the topic is final. The keys of a topic are a fixed
// set, so Delete removes them all in one command.
//
// A missing seq or epoch key means the topic's lineage is lost (never
// published, expired, flushed, evicted, deleted): the next publish starts a
// new epoch and drops whatever else was left of the old one. Reads report
// such a topic as having no lineage. So whichever of the keys expires
// first, a position is never handed out twice in one epoch.

// publishScript assigns the next position, stores and publishes one
// message.
//
// KEYS: seq, epoch, stream, snap, idem, idemexp, final
// ARGV: new epoch, body, key ("" for none), history size, history age in
// ms, idempotency window in ms, channel, idempotency ID ("" for none), TTL
// in ms, "1" for a final publish.
// Returns {1, "epoch seq"} for a new message, or {0, "epoch seq"} with the
// position first published under the idempotency ID.
var publishScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[8]
local epoch = redis.call('GET', KEYS[2])
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
	epoch = ARGV[1]
	redis.call('SET', KEYS[2], epoch)
	redis.call('SET', KEYS[1], 0)
	redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
elseif id ~= '' then
	local prev = redis.call('HGET', KEYS[5], id)
	if prev and tonumber(redis.call('ZSCORE', KEYS[6], id) or 0) > now then
		return {0, prev}
	end
end
local ttl = tonumber(ARGV[9])
local pos = epoch .. ' ' .. string.format('%d', redis.call('INCR', KEYS[1]))
local rec = pos .. ' ' .. ARGV[2]
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], '*', 'm', rec)
local age = tonumber(ARGV[5])
if now > age then
	redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d', now - age))
end
redis.call('PEXPIRE', KEYS[3], math.min(age, ttl))
if ARGV[3] ~= '' then
	redis.call('HSET', KEYS[4], ARGV[3], rec)
end
redis.call('PEXPIRE', KEYS[4], ttl)
if id ~= '' then
	local old = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, 16)
	if #old > 0 then
		redis.call('HDEL', KEYS[5], unpack(old))
		redis.call('ZREM', KEYS[6], unpack(old))
	end
	redis.call('HSET', KEYS[5], id, pos)
	redis.call('ZADD', KEYS[6], now + tonumber(ARGV[6]), id)
end
if ARGV[10] == '1' then
	redis.call('SET', KEYS[7], 1, 'PX', ttl)
	redis.call('PEXPIRE', KEYS[5], ttl)
	redis.call('PEXPIRE', KEYS[6], ttl)
else
	redis.call('DEL', KEYS[7])
	if id ~= '' then
		redis.call('PEXPIRE', KEYS[5], ttl)
		redis.call('PEXPIRE', KEYS[6], ttl)
	end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PUBLISH', ARGV[7], rec)
return {1, pos}
`)

// historyScript reads the messages after a position, together with the
// topic's position. It first trims the messages older than the history
// age, and refreshes the topic's TTL unless the topic is final.
//
// KEYS: seq, epoch, stream, snap, final
// ARGV: epoch and Seq of the position to read after, history age in ms,
// idle TTL in ms.
// Returns {epoch, seq, complete (0 or 1), record...}; epoch is "" when the
// topic has no lineage.
var historyScript = goredis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
local seq = redis.call('GET', KEYS[1])
if not epoch or not seq then
	return {'', '0', 0}
end
if redis.call('EXISTS', KEYS[5]) == 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[4])
	redis.call('PEXPIRE', KEYS[2], ARGV[4])
	redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
local after = tonumber(ARGV[2])
if after ~= 0 and ARGV[1] ~= epoch then
	return {epoch, seq, 0}
end
local n = tonumber(seq) - after
if n == 0 then
	return {epoch, seq, 1}
end
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
if cutoff > 0 then
	redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d', cutoff))
end
if n < 0 or n > redis.call('XLEN', KEYS[3]) then
	return {epoch, seq, 0}
end
local out = {epoch, seq, 1}
local entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', n)
for i = #entries, 1, -1 do
	out[#out + 1] = entries[i][2][2]
end
return out
`)

// snapshotScript reads the snapshot together with the position it
// corresponds to, and refreshes the topic's TTL unless the topic is final.
//
// KEYS: seq, epoch, snap, final
// ARGV: idle TTL in ms.
// Returns {epoch, seq, record...}; epoch is "" when the topic has no
// lineage.
var snapshotScript = goredis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
local seq = redis.call('GET', KEYS[1])
if not epoch or not seq then
	return {'', '0'}
end
if redis.call('EXISTS', KEYS[4]) == 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
	redis.call('PEXPIRE', KEYS[2], ARGV[1])
	redis.call('PEXPIRE', KEYS[3], ARGV[1])
end
local out = {epoch, seq}
for _, rec in ipairs(redis.call('HVALS', KEYS[3])) do
	out[#out + 1] = rec
end
return out
`)
