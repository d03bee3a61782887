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

// publishScript assigns the next positions, stores and publishes a batch
// of messages, in order: one call carries every publish of a batch (on a
// connection that a sender owns, see batch.go), or one publish (with any
// other client, whose pipelines go-redis splits by node, so that one
// call's keys share one hash tag).
//
// ARGV starts with a header, in the order of the hdr* constants (see
// batchCommand), then the arguments of each publish in turn: channel,
// body, message key ("" for none), idempotency key ("" for none), and
// opts: "" for the backplane's history limits and TTLs on a publish that
// is not final, else "F size age slack ttl streamTTL" (F "1" for a final
// publish). In a logged call (the header's logN set) KEYS[1] is the
// sender's log and each publish has the keys pos, stream, snap and idem:ID
// (idem: without an idempotency key); otherwise each publish has those,
// then retry and retryold, and two more arguments: its retry ID ("" with
// an idempotency key) and resent ("1" when an earlier copy may have run).
//
// Returns, for each publish in turn, two elements: 1 and "epoch seq" for a
// new message, 0 and the position first published under the idempotency
// key, or -2 and an error text for a publish that failed (a key of the
// wrong type): each publish runs in a protected call, so that one's error
// does not stop the others. Returns {-1} when the sender's log is gone:
// then the call wrote nothing.
//
// A publish carries a retry ID or an entry number of its sender's log,
// never both; they make the publish idempotent when it is sent again
// after its connection failed, in two ways (see batch.go):
//
//   - A sender that owns its connection (a *goredis.Client) logs every
//     publish it sends. The call first sets the log's TTL, which fails
//     when the log is gone: then it stops there and writes nothing. It
//     drops the entries of the calls before, whose replies were read, and
//     at its end appends "n created epoch seq" (or "n -2 error") for each
//     publish, numbered from logN. A call runs whole, so the log holds
//     every publish of a call that ran. When the connection fails, the
//     sender takes the log away (recoverScript) on a new connection: what
//     it holds ran, with these replies; what it does not hold never runs.
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
// server, about 5µs of Redis time). Every topic that starts an epoch in
// one call starts it with newEpoch: epochs are compared within a topic
// only.
const publishSource = `
local newEpoch, server, idemWindow, retryWindow, logN, logTTL, dSize, dAge, dSlack, dTTL, dStreamTTL = unpack(ARGV, 1, 11)
if server == '' then
	local info = redis.call('INFO', 'server')
	local at = string.find(info, 'run_id:', 1, true)
	server = string.sub(info, at + 7, at + 46)
end
local logged = logN ~= ''
local k, a, nk, na = 1, 12, 6, 7
if logged then
	if redis.call('PEXPIRE', KEYS[1], logTTL) == 0 then
		return {-1}
	end
	redis.call('LTRIM', KEYS[1], 0, 0)
	k, nk, na = 2, 4, 5
end
local function publish(kPos, kStream, kSnap, kIdem, kRetry, kRetryOld, channel, body, msgKey, id, opts, rid, resent)
	local final, historySize, historyAge, slack, ttl, streamTTL = false, dSize, dAge, dSlack, dTTL, dStreamTTL
	if opts ~= '' then
		local f
		f, historySize, historyAge, slack, ttl, streamTTL = string.match(opts, '^(%d) (%d+) (%d+) (%d+) (%d+) (%d+)$')
		final = f == '1'
	end
	ttl = tonumber(ttl)
	local h = redis.call('HMGET', kPos, 'e', 's', 'f', 'r', 'b', 't')
	local epoch, seq = h[1], tonumber(h[2])
	local fresh = not epoch or not seq
	if fresh then
		epoch, seq = newEpoch, 0
	elseif id ~= '' then
		local prev = redis.call('GET', kIdem)
		if prev and string.sub(prev, 1, #epoch + 1) == epoch .. ' ' then
			return 0, prev
		end
	elseif rid ~= '' and resent ~= '' then
		local prev = redis.call('HGET', kRetry, rid) or redis.call('HGET', kRetryOld, rid)
		if prev then
			return 0, prev
		end
	end
	local moved = not fresh and h[5] ~= server
	if moved then
		epoch = newEpoch
	end
	seq = seq + 1
	local seqText = string.format('%d', seq)
	local pos = epoch .. ' ' .. seqText
	if fresh then
		if rid ~= '' then
			redis.call('DEL', kPos, kStream, kSnap, kRetry, kRetryOld)
		else
			redis.call('DEL', kPos, kStream, kSnap)
		end
	end
	if moved then
		redis.call('DEL', kStream)
		local snap = redis.call('HGETALL', kSnap)
		for i = 1, #snap, 2 do
			local rec = snap[i + 1]
			redis.call('HSET', kSnap, snap[i], epoch .. string.sub(rec, (string.find(rec, ' ', 1, true))))
		end
	end
	local rec = pos .. ' ' .. body
	local entry = redis.call('XADD', kStream, 'MAXLEN', historySize, '*', 'm', rec)
	local now = tonumber(string.sub(entry, 1, string.find(entry, '-', 1, true) - 1))
	local refresh = fresh or moved or final or h[3] or now - tonumber(h[4] or 0) >= tonumber(slack)
	if refresh then
		redis.call('HSET', kPos, 'e', epoch, 's', seqText, 'r', string.format('%d', now), 'b', server)
		if final then
			redis.call('HSET', kPos, 'f', 1)
		elseif h[3] then
			redis.call('HDEL', kPos, 'f')
		end
		redis.call('PEXPIRE', kPos, ttl)
	else
		redis.call('HSET', kPos, 's', seqText)
	end
	if refresh then
		local age = tonumber(historyAge)
		if now > age then
			redis.call('XTRIM', kStream, 'MINID', string.format('%d', now - age))
		end
		redis.call('PEXPIRE', kStream, streamTTL)
	end
	local newKey = msgKey ~= '' and redis.call('HSET', kSnap, msgKey, rec) == 1
	if refresh or newKey then
		redis.call('PEXPIRE', kSnap, ttl)
	end
	if id ~= '' then
		redis.call('SET', kIdem, pos, 'PX', math.min(tonumber(idemWindow), ttl))
	end
	if rid ~= '' then
		local window = tonumber(retryWindow)
		local rotate = now - tonumber(h[6] or 0) >= window
		if rotate then
			if redis.call('EXISTS', kRetry) == 1 then
				redis.call('RENAME', kRetry, kRetryOld)
			else
				redis.call('DEL', kRetryOld)
			end
			redis.call('HSET', kPos, 't', string.format('%d', now))
		end
		redis.call('HSET', kRetry, rid, pos)
		if rotate or refresh then
			redis.call('PEXPIRE', kRetry, math.min(2 * window, ttl))
		end
	end
	redis.call('PUBLISH', channel, rec)
	return 1, pos
end
local out, entries = {}, {}
local n = tonumber(logN)
while a <= #ARGV do
	local rid, resent = '', ''
	if not logged then
		rid, resent = ARGV[a + 5], ARGV[a + 6]
	end
	local ok, created, pos = pcall(publish, KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5],
		ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], rid, resent)
	if not ok then
		if type(created) == 'table' then
			created = created.err
		end
		created, pos = -2, tostring(created)
	end
	out[#out + 1] = created
	out[#out + 1] = pos
	if logged then
		entries[#entries + 1] = string.format('%d %d ', n, created) .. pos
		n = n + 1
	end
	k, a = k + nk, a + na
end
if logged then
	redis.call('RPUSH', KEYS[1], unpack(entries))
end
return out
`

var (
	publishScript = goredis.NewScript(publishSource)
	publishHash   = publishScript.Hash()
)

// The header of the publish script's arguments: header[hdrX] is
// ARGV[hdrX+1].
const (
	hdrNewEpoch    = iota // a random epoch, for the topics that start one
	hdrRunID              // the run_id of the Redis process, or ""
	hdrIdemWindow         // IdempotencyWindow in ms
	hdrRetryWindow        // the retry window in ms
	hdrLogN               // the number of the first publish in the sender's log, or ""
	hdrLogTTL             // the log's TTL in ms
	hdrHistorySize        // HistorySize
	hdrHistoryAge         // HistoryAge in ms
	hdrSlack              // slack in ms
	hdrTTL                // IdleTTL + slack, in ms
	hdrStreamTTL          // the stream's TTL in ms
	numHeader
)

// publishHeader is the header of one publish script call.
type publishHeader [numHeader]any

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
