"""The Lua scripts of the Redis TurnStore: each multi-key change runs atomically inside Redis.

Keys (prefix P = REDIS_PREFIX):
    P s:<session>      hash   ns, created, seq (last turn's), flushed (watermark)
    P st:<session>     zset   turn ids scored by seq
    P t:<turn>         hash   session, seq, user, resp, status, created, completed, uname, aname (speakers)
    P nss:<ns>         zset   the namespace's sessions scored by minus their last turn's time (their
                              creation's, without turns): ZRANGE lists the most recent first, ties by id
    P lease:<session>  string id of the turn running on the session (PX; renewed by its replica)
    P pending          set    turns not finished yet (crash recovery)
    P unflushed        zset   session -> completed turns above its watermark
    P fl:<session>     list   "from to documents at", one per flush
    P docid            counter for document ids (FAISS needs integers)
    P d:<id>           hash   ns, nsh (sha1 of ns, a KNN tag), session|source, turn, text, emb, created (when
                              what it remembers was said: its turn's time)
    P nsd:<ns>         zset   the namespace's document ids, zero-padded (doc_member) so that ZREVRANGE lists
                              them newest first by created, then by id
    P sd:<session>     set    document ids of the session
    P log:<ns>         stream op=add|del, doc=<id>: the change log vector indexes replay; trimmed once folded
    P sn:<ns>          set    the compacted log: ids of the namespace's live documents as of P snu:<ns>
    P snu:<ns>         string id of the last log entry folded into P sn:<ns>
    P ns               set    namespaces that have a log
    P compacting       string a replica's claim on the current compaction sweep (PX; it just expires)
    P kb               hash   knowledge source -> digest
    P kbd:<source>     set    document ids of a knowledge source

Every script is idempotent when retried after a lost reply: begin_turn is keyed by a turn id made by
the caller, finish_turn only moves a turn out of pending, commit_flush compares-and-sets the
watermark (and checks that the session still holds the planned turns), knowledge compares digests,
compaction folds by document id and trims only what it has folded. Keys are built inside the scripts,
which Redis Cluster forbids; a single Redis (with replicas / Sentinel) is the supported deployment.
The memory API's and imports' scripts are in redis_memory_scripts.
"""

# Lua helpers, prepended to the scripts that use them.
DOC_MEMBER = """
local function doc_member(id) return string.format('%016d', tonumber(id)) end
"""

# A session's place in P nss:<ns>: its last turn's time `at` (for its first turn, or a new session, just `at`).
TOUCH_SESSION = """
local function touch_session(P, ns, sid, had_turns, at)
  local key = P .. 'nss:' .. ns
  local old = redis.call('ZSCORE', key, sid)
  if had_turns and old and -tonumber(old) >= tonumber(at) then return end
  redis.call('ZADD', key, -tonumber(at), sid)
end
"""

BEGIN_TURN = TOUCH_SESSION + """
local P, sid, ns, text, tid, now, lease = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local tkey = P .. 't:' .. tid
if redis.call('EXISTS', tkey) == 1 then
  return {'ok', redis.call('HGET', tkey, 'seq'), redis.call('HGET', tkey, 'created')}
end
local skey = P .. 's:' .. sid
local owner = redis.call('HGET', skey, 'ns')
if owner and owner ~= ns then return {'forbidden'} end
local lkey = P .. 'lease:' .. sid
local holder = redis.call('GET', lkey)
if holder and holder ~= tid then return {'busy'} end
redis.call('SET', lkey, tid, 'PX', lease)
if not owner then redis.call('HSET', skey, 'ns', ns, 'created', now, 'seq', 0, 'flushed', 0) end
local seq = redis.call('HINCRBY', skey, 'seq', 1)
redis.call('HSET', tkey, 'session', sid, 'seq', seq, 'user', text, 'status', 'pending', 'created', now)
redis.call('ZADD', P .. 'st:' .. sid, seq, tid)
redis.call('SADD', P .. 'pending', tid)
touch_session(P, ns, sid, seq > 1, now)
return {'ok', tostring(seq), now}
"""

FINISH_TURN = """
local P, tid, resp, status, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local tkey = P .. 't:' .. tid
local t = redis.call('HMGET', tkey, 'session', 'status', 'seq')
if not t[1] then return 0 end
local sid, cur = t[1], t[2]
local applied = 0
-- an 'interrupted' turn may still complete: its replica lost the lease but kept streaming the reply
if cur == 'pending' or (cur == 'interrupted' and status ~= 'interrupted') then
  redis.call('HSET', tkey, 'resp', resp, 'status', status, 'completed', now)
  redis.call('SREM', P .. 'pending', tid)
  if status == 'complete' then
    local flushed = tonumber(redis.call('HGET', P .. 's:' .. sid, 'flushed') or '0')
    if tonumber(t[3]) > flushed then redis.call('ZINCRBY', P .. 'unflushed', 1, sid) end
  end
  applied = 1
end
local lkey = P .. 'lease:' .. sid
if redis.call('GET', lkey) == tid then redis.call('DEL', lkey) end
return applied
"""

# Returns {namespace|false, watermark|false, then 8 fields per turn}; mode 'buffer' keeps only the
# completed turns above the watermark, 'history' every turn.
READ_TURNS = """
local P, sid, mode = ARGV[1], ARGV[2], ARGV[3]
local s = redis.call('HMGET', P .. 's:' .. sid, 'ns', 'flushed')
local out = {s[1], s[2]}
if not s[1] then return out end
local min = '-inf'
if mode == 'buffer' then min = '(' .. s[2] end
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'st:' .. sid, min, '+inf')) do
  local t = redis.call('HMGET', P .. 't:' .. tid, 'seq', 'user', 'resp', 'status', 'created', 'uname', 'aname')
  if t[4] and (mode ~= 'buffer' or t[4] == 'complete') then
    out[#out + 1] = tid
    for i = 1, 7 do out[#out + 1] = t[i] end
  end
end
return out
"""

# ARGV: P, session, namespace, watermark planned from, new watermark, now, last planned turn, n, then per
# document: its turn, text, emb, created (its turn's: a memory is dated by when it was said, not flushed).
COMMIT_FLUSH = DOC_MEMBER + """
local P, sid, ns, after, upto, now, last, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7],
                                              tonumber(ARGV[8])
local skey = P .. 's:' .. sid
local flushed = redis.call('HGET', skey, 'flushed')
if not flushed or tonumber(flushed) ~= tonumber(after) then return false end
-- a session forgotten and recreated since the plan has the same watermark but new turns: the planned
-- ones went with the forget
if redis.call('HGET', P .. 't:' .. last, 'session') ~= sid then return false end
local log, nsh, ids = P .. 'log:' .. ns, redis.sha1hex(ns), {}
for i = 0, n - 1 do
  local tid, text, emb, created = ARGV[9 + 4 * i], ARGV[10 + 4 * i], ARGV[11 + 4 * i], ARGV[12 + 4 * i]
  local id = redis.call('INCR', P .. 'docid')
  redis.call('HSET', P .. 'd:' .. id, 'ns', ns, 'nsh', nsh, 'session', sid, 'turn', tid, 'text', text,
             'emb', emb, 'created', created)
  redis.call('SADD', P .. 'sd:' .. sid, id)
  redis.call('ZADD', P .. 'nsd:' .. ns, created, doc_member(id))
  redis.call('XADD', log, '*', 'op', 'add', 'doc', id)
  ids[#ids + 1] = id
end
redis.call('HSET', skey, 'flushed', upto)
redis.call('RPUSH', P .. 'fl:' .. sid, after .. ' ' .. upto .. ' ' .. n .. ' ' .. now)
redis.call('SADD', P .. 'ns', ns)
local left = 0
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'st:' .. sid, '(' .. upto, '+inf')) do
  if redis.call('HGET', P .. 't:' .. tid, 'status') == 'complete' then left = left + 1 end
end
if left > 0 then redis.call('ZADD', P .. 'unflushed', left, sid) else redis.call('ZREM', P .. 'unflushed', sid) end
return ids
"""

# -1: a turn holds the session's lease (it runs on some replica); else the number of documents removed.
FORGET_SESSION = DOC_MEMBER + """
local P, sid = ARGV[1], ARGV[2]
if redis.call('EXISTS', P .. 'lease:' .. sid) == 1 then return -1 end
local n, sd = 0, P .. 'sd:' .. sid
for _, id in ipairs(redis.call('SMEMBERS', sd)) do
  local dkey = P .. 'd:' .. id
  local ns = redis.call('HGET', dkey, 'ns')
  if ns then
    redis.call('DEL', dkey)
    redis.call('ZREM', P .. 'nsd:' .. ns, doc_member(id))
    redis.call('XADD', P .. 'log:' .. ns, '*', 'op', 'del', 'doc', id)
    n = n + 1
  end
end
local st = P .. 'st:' .. sid
for _, tid in ipairs(redis.call('ZRANGE', st, 0, -1)) do
  redis.call('DEL', P .. 't:' .. tid)
  redis.call('SREM', P .. 'pending', tid)
end
local owner = redis.call('HGET', P .. 's:' .. sid, 'ns')
if owner then redis.call('ZREM', P .. 'nss:' .. owner, sid) end
redis.call('DEL', sd, st, P .. 's:' .. sid, P .. 'fl:' .. sid)
redis.call('ZREM', P .. 'unflushed', sid)
return n
"""

# Entries after `cursor` (a stream id; '' for the beginning), 8 fields each: cursor, doc id, op, text, emb,
# session, created, turn. An add whose document is gone (forgotten since) reads as a del, like the SQLite
# log's LEFT JOIN.
# {'expired'} when entries the caller has not read may have been trimmed: trims cut a prefix, so that is
# when its cursor entry is gone, or, reading from the beginning, when compaction has begun.
LOG_SINCE = """
local P, ns, cursor, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local log, start = P .. 'log:' .. ns, '-'
if cursor == '' then
  if redis.call('EXISTS', P .. 'snu:' .. ns) == 1 then return {'expired'} end
else
  if #redis.call('XRANGE', log, cursor, cursor) == 0 then return {'expired'} end
  start = '(' .. cursor
end
local out = {}
for _, e in ipairs(redis.call('XRANGE', log, start, '+', 'COUNT', count)) do
  local f = e[2]
  local op, id = f[2], f[4]
  local d = {false}
  if op == 'add' then d = redis.call('HMGET', P .. 'd:' .. id, 'text', 'emb', 'session', 'created', 'turn') end
  out[#out + 1] = e[1]
  out[#out + 1] = id
  out[#out + 1] = d[1] and 'add' or 'del'
  for i = 1, 5 do out[#out + 1] = d[1] and d[i] or '' end
end
return out
"""

# One SSCAN page of the compacted log, packed: {next scan cursor, ids, text lengths, texts, session lengths,
# sessions, embedding lengths, embeddings, created times, turn lengths, turns}, ids, lengths and times
# comma-separated (a missing time is empty), the rest concatenated. A load
# reads every live document at once, and a reply element costs the client far more than its bytes do.
# A listed document whose hash is gone was deleted after the snapshot: its del is in the stream tail.
SNAPSHOT_PAGE = """
local P, ns, scan, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local page = redis.call('SSCAN', P .. 'sn:' .. ns, scan, 'COUNT', count)
local ids, texts, tlen, sessions, slen, embs, elen, created, turns, ulen = {}, {}, {}, {}, {}, {}, {}, {}, {}, {}
for _, id in ipairs(page[2]) do
  local d = redis.call('HMGET', P .. 'd:' .. id, 'text', 'emb', 'session', 'created', 'turn')
  if d[1] then
    local session, turn = d[3] or '', d[5] or ''
    ids[#ids + 1], created[#created + 1] = id, d[4] or ''
    texts[#texts + 1], tlen[#tlen + 1] = d[1], #d[1]
    embs[#embs + 1], elen[#elen + 1] = d[2], #d[2]
    sessions[#sessions + 1], slen[#slen + 1] = session, #session
    turns[#turns + 1], ulen[#ulen + 1] = turn, #turn
  end
end
return {page[1], table.concat(ids, ','), table.concat(tlen, ','), table.concat(texts),
        table.concat(slen, ','), table.concat(sessions), table.concat(elen, ','), table.concat(embs),
        table.concat(created, ','), table.concat(ulen, ','), table.concat(turns)}
"""

# Folds up to `count` log entries after P snu:<ns> into P sn:<ns>, then trims the log below the older of
# the folded position and `keep` ms ago (recent entries stay so that replicas a little behind catch up
# from the tail instead of reloading). Never trims an entry it has not folded, and keeps the last folded
# one: readers check that their cursor entry still exists. Returns {1 while entries remain to fold, the
# number of entries trimmed}.
COMPACT_LOG = """
local P, ns, count, keep = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local log, snap, at = P .. 'log:' .. ns, P .. 'sn:' .. ns, P .. 'snu:' .. ns
local upto = redis.call('GET', at)
local start = '-'
if upto then start = '(' .. upto end
local entries = redis.call('XRANGE', log, start, '+', 'COUNT', count)
for _, e in ipairs(entries) do
  local f = e[2]
  if f[2] == 'add' then redis.call('SADD', snap, f[4]) else redis.call('SREM', snap, f[4]) end
end
if #entries > 0 then
  upto = entries[#entries][1]
  redis.call('SET', at, upto)
end
if not upto then return {0, 0} end
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - keep
local minid = upto
if cutoff < tonumber(string.match(upto, '^(%d+)')) then minid = string.format('%.0f-0', cutoff) end
local trimmed = redis.call('XTRIM', log, 'MINID', minid)
if #entries == count then return {1, trimmed} end
return {0, trimmed}
"""

_DROP_SOURCE = DOC_MEMBER + """
local function drop_source(P, kns, source)
  local set = P .. 'kbd:' .. source
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('DEL', P .. 'd:' .. id) == 1 then
      redis.call('ZREM', P .. 'nsd:' .. kns, doc_member(id))
      redis.call('XADD', P .. 'log:' .. kns, '*', 'op', 'del', 'doc', id)
    end
  end
  redis.call('DEL', set)
end
"""

REPLACE_KNOWLEDGE = _DROP_SOURCE + """
local P, kns, source, digest, now, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
if redis.call('HGET', P .. 'kb', source) == digest then return 0 end
drop_source(P, kns, source)
local log, nsh, set = P .. 'log:' .. kns, redis.sha1hex(kns), P .. 'kbd:' .. source
for i = 0, n - 1 do
  local id = redis.call('INCR', P .. 'docid')
  redis.call('HSET', P .. 'd:' .. id, 'ns', kns, 'nsh', nsh, 'source', source, 'text', ARGV[7 + 2 * i],
             'emb', ARGV[8 + 2 * i], 'created', now)
  redis.call('SADD', set, id)
  redis.call('ZADD', P .. 'nsd:' .. kns, now, doc_member(id))
  redis.call('XADD', log, '*', 'op', 'add', 'doc', id)
end
redis.call('HSET', P .. 'kb', source, digest)
redis.call('SADD', P .. 'ns', kns)
return 1
"""

DROP_KNOWLEDGE = _DROP_SOURCE + """
drop_source(ARGV[1], ARGV[2], ARGV[3])
redis.call('HDEL', ARGV[1] .. 'kb', ARGV[3])
return 1
"""

# A pending turn is orphaned when no replica holds its session's lease for it any more (its replica
# died, so the lease expired): mark it interrupted, as the SQLite store does at start.
REAP_PENDING = """
local P, now, n = ARGV[1], ARGV[2], 0
for _, tid in ipairs(redis.call('SMEMBERS', P .. 'pending')) do
  local tkey = P .. 't:' .. tid
  local t = redis.call('HMGET', tkey, 'session', 'status', 'resp')
  if not t[1] or t[2] ~= 'pending' then
    redis.call('SREM', P .. 'pending', tid)
  elseif redis.call('GET', P .. 'lease:' .. t[1]) ~= tid then
    redis.call('HSET', tkey, 'status', 'interrupted', 'resp', t[3] or '', 'completed', now)
    redis.call('SREM', P .. 'pending', tid)
    n = n + 1
  end
end
return n
"""

# ARGV: P, lease ms, then (session, turn) pairs. Extends each lease still held by its turn, re-takes
# one that expired meanwhile if nobody else took it; returns the turns whose lease went to another.
RENEW_LEASES = """
local P, ms, lost = ARGV[1], ARGV[2], {}
for i = 3, #ARGV, 2 do
  local key, tid = P .. 'lease:' .. ARGV[i], ARGV[i + 1]
  local holder = redis.call('GET', key)
  if holder == tid then
    redis.call('PEXPIRE', key, ms)
  elseif not holder then
    -- a renewal that crossed the turn's finish must not bring its lease back
    if redis.call('HGET', P .. 't:' .. tid, 'status') == 'pending' then
      redis.call('SET', key, tid, 'PX', ms)
    end
  else
    lost[#lost + 1] = tid
  end
end
return lost
"""
