package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts run atomically on the shard that holds the topic's keys (they
// share one hash tag). Each topic has:
//
//	{prefix:topic}:pos      the position: hash of "e" = the epoch of
//	                        everything stored, "s" = the last Seq handed
//	                        out, "r" = when a publish last set the TTLs
//	                        (Unix ms), "f" = "1" while the last publish
//	                        was final, "b" = the run_id of the Redis
//	                        process that wrote "e", "t" = when retry
//	                        last became retryold (Unix ms)
//	{prefix:topic}:stream   the history: a stream capped by count and age,
//	                        one entry per message, field "m" = the record
//	{prefix:topic}:snap     the snapshot: hash of key -> record
//	{prefix:topic}:idem:ID  an idempotency key ID: a string, the "epoch
//	                        seq" it was published at, which counts only
//	                        while the topic is in that epoch
//	{prefix:topic}:retry    the random IDs of publishes without an
//	                        idempotency key, since "t": hash of ID ->
//	                        "epoch seq"; a publish more than the retry
//	                        window after "t" renames it to
//	{prefix:topic}:retryold so that an ID is known for one to two
//	                        windows (RENAME keeps the TTL)
//
// and the channel {prefix:topic} carries each record live.
//
// Every key has a TTL. Epoch and Seq live in one hash, so they are lost
// together: a pos hash without both means the topic's lineage is lost
// (never published, expired, flushed, evicted, deleted), the next publish
// starts a new epoch and drops whatever else was left of the old one, and
// reads report the topic as having no lineage. So no position is ever
// handed out twice in one epoch, whatever expires first.
//
// A Redis process that did not write "e" (field "b" names another run_id)
// may hold older data than was handed out: it restarted from an RDB or
// append-only file that missed the last writes, or it is a replica
// promoted before it had them. Its Seq may be behind, so the next publish
// moves the topic to a new epoch, continuing the numbering: it drops the
// history (of the old epoch) and relabels the snapshot's records with the
// new epoch, so the snapshot stays whole. A run_id cannot come back with
// stale data, since every process start makes a new one: the check holds
// however far publishes move past the old head before anyone reads. Reads
// keep serving the old epoch until that publish; positions they return
// were handed out for the same messages, and a reader from a position
// past the restored head gets an incomplete history.
//
// TTLs, with slack = min(HistoryAge, IdleTTL)/64. A publish sets them at
// most once per slack (field "r"), so that a busy topic pays for it
// rarely, and to slack more than their lifetime, so that they still
// outlive the last publish by that lifetime:
//
//   - stream: HistoryAge (or IdleTTL when shorter) + slack, set by
//     publishes, never by reads. The publishes that set the TTLs also trim
//     entries older than HistoryAge, and so does every History before it
//     reads: the slack only holds memory a little longer, within the
//     stream's count limit.
//   - pos and snap: IdleTTL + slack, set by publishes; IdleTTL, set by
//     every read unless the topic is final. A publish that makes snap
//     (its first key) without setting the TTLs gives it one, so snap never
//     expires before pos.
//   - idem:ID: IdempotencyWindow, or the TTL of the publish that writes
//     it when shorter. It is never extended or shortened: it may outlive
//     a topic that was deleted or went final, and then counts for nothing,
//     since the topic's next lineage has another epoch.
//   - retry: the shorter of two retry windows and the TTL of the publish
//     that sets it: the first one after a rotation (which makes the hash
//     anew, then renames it a window later), and those that set the TTLs;
//     reads do not extend it, so it never outlives the topic.
//   - after a final publish, every key but the idempotency keys: FinalTTL
//     (the stream HistoryAge when shorter), set at once; reads leave it
//     alone, and the next publish that is not final sets the TTLs again.
//
// A stream made by a publish that does not set the TTLs has none until
// the next one that does. That happens only when the stream alone was
// removed behind the scripts' back (deleted by hand, evicted): a lost pos
// makes the next publish set every TTL, and a stream that expired did so
// at least slack after the last setting.

// publishScript assigns the next position, stores and publishes one
// message.
//
// KEYS: pos, stream, snap, idem:ID (idem: without an idempotency key), and
// then retry, retryold, or for a logged publish the sender's log
// ARGV: the publish arguments, in the order of the arg* constants (see
// publishArgs); the script names them in the same order on its first
// line, so that an argument is added at the end of both lists.
// Returns {1, "epoch seq"} for a new message, {0, "epoch seq"} with the
// position first published under the idempotency ID, or {-1, ""} when
// the sender's log is gone: then the script wrote nothing.
//
// A publish carries a retry ID or an entry number of its sender's log,
// never both; they make the publish idempotent when it is sent again
// after its connection failed, in two ways (see batch.go):
//
//   - A sender that owns its connection (a *goredis.Client) logs every
//     publish it sends: logN numbers the publish on that connection, and
//     the script appends "logN created epoch seq" to the log (a list
//     whose first element is a placeholder), after its reads and before
//     its writes, with RPUSHX: when the log is gone the script stops
//     there and writes nothing. The first publish of each batch (logTTL
//     set) drops the entries of the batches before, whose replies were
//     read, and sets the log's TTL. When the connection fails, the sender
//     takes the log away (recoverScript) on a new connection: what it
//     holds ran, with these replies; what it does not hold never runs.
//   - With any other client, go-redis may send a pipeline again by itself:
//     the publish carries a random retry ID, which the script stores in
//     the hash retry (with its position), and resent is "1" when an
//     earlier copy may have run, so that the script looks the ID up
//     first. This costs a hash entry per publish for one to two retry
//     windows.
//
// The script always looks up an idempotency key.
//
// The script reads Redis's clock (Unix ms) from the ID that XADD gives the
// message's entry, which is the time unless the stream's last entry is
// later, rather than with a TIME call of its own.
//
// runID is the run_id of the Redis process that runs the script, read by
// the caller on the connection that carries the script (a connection
// never outlives its process), or "" to have the script read it (INFO
// server, about 5µs of Redis time).
const publishSource = `
local newEpoch, body, msgKey, historySize, historyAge, idemWindow, channel, id, ttlArg, finalArg, slack, streamTTL, rid, retryWindow, runID, resent, logN, logTTL = unpack(ARGV)
local server = runID
if server == '' then
	local info = redis.call('INFO', 'server')
	local at = string.find(info, 'run_id:', 1, true)
	server = string.sub(info, at + 7, at + 46)
end
local function logged(created, pos)
	if logN == '' then
		return true
	end
	if logTTL ~= '' then
		redis.call('LTRIM', KEYS[5], 0, 0)
		redis.call('PEXPIRE', KEYS[5], logTTL)
	end
	return redis.call('RPUSHX', KEYS[5], logN .. ' ' .. created .. ' ' .. pos) > 0
end
local h = redis.call('HMGET', KEYS[1], 'e', 's', 'f', 'r', 'b', 't')
local epoch, seq = h[1], tonumber(h[2])
local fresh = not epoch or not seq
if fresh then
	epoch, seq = newEpoch, 0
elseif id ~= '' then
	local prev = redis.call('GET', KEYS[4])
	if prev and string.sub(prev, 1, #epoch + 1) == epoch .. ' ' then
		if not logged(0, prev) then
			return {-1, ''}
		end
		return {0, prev}
	end
elseif rid ~= '' and resent ~= '' then
	local prev = redis.call('HGET', KEYS[5], rid) or redis.call('HGET', KEYS[6], rid)
	if prev then
		return {0, prev}
	end
end
local moved = not fresh and h[5] ~= server
if moved then
	epoch = newEpoch
end
seq = seq + 1
local seqText = string.format('%d', seq)
local pos = epoch .. ' ' .. seqText
if not logged(1, pos) then
	return {-1, ''}
end
if fresh then
	if rid ~= '' then
		redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6])
	else
		redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
	end
end
if moved then
	redis.call('DEL', KEYS[2])
	local snap = redis.call('HGETALL', KEYS[3])
	for i = 1, #snap, 2 do
		local rec = snap[i + 1]
		redis.call('HSET', KEYS[3], snap[i], epoch .. string.sub(rec, (string.find(rec, ' ', 1, true))))
	end
end
local rec = pos .. ' ' .. body
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', historySize, '*', 'm', rec)
local now = tonumber(string.sub(entry, 1, string.find(entry, '-', 1, true) - 1))
local final = finalArg == '1'
local ttl = tonumber(ttlArg)
local refresh = fresh or moved or final or h[3] or now - tonumber(h[4] or 0) >= tonumber(slack)
if refresh then
	redis.call('HSET', KEYS[1], 'e', epoch, 's', seqText, 'r', string.format('%d', now), 'b', server)
	if final then
		redis.call('HSET', KEYS[1], 'f', 1)
	elseif h[3] then
		redis.call('HDEL', KEYS[1], 'f')
	end
	redis.call('PEXPIRE', KEYS[1], ttl)
else
	redis.call('HSET', KEYS[1], 's', seqText)
end
if refresh then
	local age = tonumber(historyAge)
	if now > age then
		redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', now - age))
	end
	redis.call('PEXPIRE', KEYS[2], streamTTL)
end
local newKey = msgKey ~= '' and redis.call('HSET', KEYS[3], msgKey, rec) == 1
if refresh or newKey then
	redis.call('PEXPIRE', KEYS[3], ttl)
end
if id ~= '' then
	redis.call('SET', KEYS[4], pos, 'PX', math.min(tonumber(idemWindow), ttl))
end
if rid ~= '' then
	local window = tonumber(retryWindow)
	local rotate = now - tonumber(h[6] or 0) >= window
	if rotate then
		if redis.call('EXISTS', KEYS[5]) == 1 then
			redis.call('RENAME', KEYS[5], KEYS[6])
		else
			redis.call('DEL', KEYS[6])
		end
		redis.call('HSET', KEYS[1], 't', string.format('%d', now))
	end
	redis.call('HSET', KEYS[5], rid, pos)
	if rotate or refresh then
		redis.call('PEXPIRE', KEYS[5], math.min(2 * window, ttl))
	end
end
redis.call('PUBLISH', channel, rec)
return {1, pos}
`

var (
	publishScript = goredis.NewScript(publishSource)
	publishHash   = publishScript.Hash()
)

// The publish script's arguments: publishArgs[argX] is ARGV[argX+1].
const (
	argNewEpoch    = iota // a random epoch, for a topic that starts one
	argBody               // the record's body (appendBody)
	argKey                // the message's key, "" for none
	argHistorySize        // HistorySize
	argHistoryAge         // HistoryAge in ms
	argIdemWindow         // IdempotencyWindow in ms
	argChannel            // the topic's channel
	argIdemID             // the idempotency key, "" for none
	argTTL                // IdleTTL + slack, or FinalTTL, in ms
	argFinal              // "1" for a final publish, else ""
	argSlack              // slack in ms
	argStreamTTL          // the stream's TTL in ms
	argRetryID            // the retry ID, "" with an idempotency key
	argRetryWindow        // the retry window in ms
	argRunID              // the run_id of the Redis process, or ""
	argResent             // "1" when an earlier copy may have run, else ""
	argLog                // the entry number in the sender's log, or ""
	argLogTTL             // the log's TTL in ms for a batch's first publish, else ""
	numPublishArgs
)

// publishArgs are the arguments of one publish script call.
type publishArgs [numPublishArgs]any

// recoverScript takes a sender's log away: it renames the log, so that no
// publish logged to it runs any more, and returns the entries after the
// placeholder ("logN created epoch seq", see publishScript). It can run
// again, when its own reply was lost: a log taken before is read from its
// new name.
//
// KEYS: the log, and its name once taken (the log's name + ":taken")
// ARGV: how long the taken log is kept, in ms
var recoverScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
	redis.call('RENAME', KEYS[1], KEYS[2])
	redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return redis.call('LRANGE', KEYS[2], 1, -1)
`)

// historyScript reads the messages after a position, together with the
// topic's position. It trims the messages older than the history age, and
// sets the topic's TTL back to IdleTTL (the stream's to the shorter of
// IdleTTL and the history age, whose older messages it trims) unless the
// topic is final.
//
// KEYS: pos, stream, snap
// ARGV: epoch and Seq of the position to read after, history age in ms,
// IdleTTL in ms.
// Returns {epoch, seq, complete (0 or 1), record...}; epoch is "" when the
// topic has no lineage.
var historyScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'e', 's', 'f')
local epoch, seq = h[1], h[2]
if not epoch or not seq then
	return {'', '0', 0}
end
if not h[3] then
	redis.call('PEXPIRE', KEYS[1], ARGV[4])
	redis.call('PEXPIRE', KEYS[3], ARGV[4])
	redis.call('PEXPIRE', KEYS[2], math.min(tonumber(ARGV[3]), tonumber(ARGV[4])))
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
	redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', cutoff))
end
if n < 0 or n > redis.call('XLEN', KEYS[2]) then
	return {epoch, seq, 0}
end
local out = {epoch, seq, 1}
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)
for i = #entries, 1, -1 do
	out[#out + 1] = entries[i][2][2]
end
return out
`)

// snapshotScript reads the snapshot together with the position it
// corresponds to, and sets the topic's TTL back to IdleTTL (the stream's
// to the shorter of IdleTTL and the history age) unless the topic is
// final.
//
// KEYS: pos, snap, stream
// ARGV: IdleTTL in ms, history age in ms.
// Returns {epoch, seq, record...}; epoch is "" when the topic has no
// lineage.
var snapshotScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'e', 's', 'f')
local epoch, seq = h[1], h[2]
if not epoch or not seq then
	return {'', '0'}
end
if not h[3] then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
	redis.call('PEXPIRE', KEYS[2], ARGV[1])
	redis.call('PEXPIRE', KEYS[3], math.min(tonumber(ARGV[1]), tonumber(ARGV[2])))
end
local out = {epoch, seq}
for _, rec in ipairs(redis.call('HVALS', KEYS[2])) do
	out[#out + 1] = rec
end
return out
`)
