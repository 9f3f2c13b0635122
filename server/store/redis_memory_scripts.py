"""The Lua scripts of the Redis TurnStore's memory API and chat imports (the key layout: redis_scripts).

A user's memories are listed from P nsd:<ns> and their sessions from P nss:<ns>; every script that writes a
namespace's documents or sessions keeps those indexes in the same atomic step. A change to a document is
appended to the namespace's log as a flush's are, so vector indexes follow it: an edit logs a del and then an
add of the same id (an index drops the old words and vector, then takes the new ones; compaction folds the
pair into "still live").
"""

from server.store.redis_scripts import DOC_MEMBER, TOUCH_SESSION

# ARGV: P, session, namespace, now, n, then 6 per turn: id, user, response, created, user name, assistant name
# ('' for none). Appends completed turns after the session's last one; creates the session if absent.
# Returns {'forbidden'} when another namespace owns it, else {'ok', seq of the first turn}; a retry after a
# lost reply finds the first turn written and answers as the first run did.
IMPORT_TURNS = TOUCH_SESSION + """
local P, sid, ns, now, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local skey, st = P .. 's:' .. sid, P .. 'st:' .. sid
local owner = redis.call('HGET', skey, 'ns')
if owner and owner ~= ns then return {'forbidden'} end
if n > 0 and redis.call('EXISTS', P .. 't:' .. ARGV[6]) == 1 then
  return {'ok', redis.call('HGET', P .. 't:' .. ARGV[6], 'seq')}
end
if not owner then
  redis.call('HSET', skey, 'ns', ns, 'created', now, 'seq', 0, 'flushed', 0)
  touch_session(P, ns, sid, false, now)
end
local first
for i = 0, n - 1 do
  local a = 6 + 6 * i
  local tid, created = ARGV[a], ARGV[a + 3]
  local seq = redis.call('HINCRBY', skey, 'seq', 1)
  first = first or seq
  local tkey = P .. 't:' .. tid
  redis.call('HSET', tkey, 'session', sid, 'seq', seq, 'user', ARGV[a + 1], 'resp', ARGV[a + 2],
             'status', 'complete', 'created', created, 'completed', created)
  if ARGV[a + 4] ~= '' then redis.call('HSET', tkey, 'uname', ARGV[a + 4]) end
  if ARGV[a + 5] ~= '' then redis.call('HSET', tkey, 'aname', ARGV[a + 5]) end
  redis.call('ZADD', st, seq, tid)
  touch_session(P, ns, sid, seq > 1, created)
end
if n > 0 then redis.call('ZINCRBY', P .. 'unflushed', n, sid) end
return {'ok', tostring(first or 0)}
"""

# A page of the namespace's sessions, most recently active first: 5 fields each: id, created, minus its last
# turn's time (the score), turns, the start of its first message (`chars` bytes at most).
SESSIONS_PAGE = """
local P, ns, offset, limit, chars = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
local page = redis.call('ZRANGE', P .. 'nss:' .. ns, offset, offset + limit - 1, 'WITHSCORES')
for i = 1, #page, 2 do
  local sid = page[i]
  local st = P .. 'st:' .. sid
  local first = redis.call('ZRANGE', st, 0, 0)[1]
  local title = redis.call('HGET', P .. 's:' .. sid, 'title')
  if not title then title = first and redis.call('HGET', P .. 't:' .. first, 'user') or '' end
  out[#out + 1] = sid
  out[#out + 1] = redis.call('HGET', P .. 's:' .. sid, 'created') or page[i + 1]
  out[#out + 1] = page[i + 1]
  out[#out + 1] = redis.call('ZCARD', st)
  out[#out + 1] = string.sub(title, 1, chars)
end
return out
"""

# A page of the namespace's memories, newest first: 5 fields each: id, text, session, created, turn.
MEMORIES_PAGE = """
local P, ns, offset, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for _, member in ipairs(redis.call('ZREVRANGE', P .. 'nsd:' .. ns, offset, offset + limit - 1)) do
  local id = string.match(member, '^0*(.+)$')
  local d = redis.call('HMGET', P .. 'd:' .. id, 'text', 'session', 'created', 'turn')
  out[#out + 1] = id
  for j = 1, 4 do out[#out + 1] = d[j] end
end
return out
"""

# ARGV: P, namespace, text, emb, created, session ('' for none). Returns the new document's id.
ADD_MEMORY = DOC_MEMBER + """
local P, ns, text, emb, created, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local id = redis.call('INCR', P .. 'docid')
local dkey = P .. 'd:' .. id
redis.call('HSET', dkey, 'ns', ns, 'nsh', redis.sha1hex(ns), 'text', text, 'emb', emb, 'created', created)
if sid ~= '' then
  redis.call('HSET', dkey, 'session', sid)
  redis.call('SADD', P .. 'sd:' .. sid, id)
end
redis.call('ZADD', P .. 'nsd:' .. ns, created, doc_member(id))
redis.call('XADD', P .. 'log:' .. ns, '*', 'op', 'add', 'doc', id)
redis.call('SADD', P .. 'ns', ns)
return id
"""

# ARGV: P, namespace, id, text, emb. Returns false when the namespace has no such document, else its
# {session, created, turn}. Safe to retry: a second run logs the same change again, which changes nothing.
EDIT_MEMORY = """
local P, ns, id, text, emb = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local dkey = P .. 'd:' .. id
if redis.call('HGET', dkey, 'ns') ~= ns then return false end
redis.call('HSET', dkey, 'text', text, 'emb', emb)
local log = P .. 'log:' .. ns
redis.call('XADD', log, '*', 'op', 'del', 'doc', id)
redis.call('XADD', log, '*', 'op', 'add', 'doc', id)
return redis.call('HMGET', dkey, 'session', 'created', 'turn')
"""

# ARGV: P, namespace, id. Returns 1 when it deleted the namespace's document, else 0.
DELETE_MEMORY = DOC_MEMBER + """
local P, ns, id = ARGV[1], ARGV[2], ARGV[3]
local dkey = P .. 'd:' .. id
local d = redis.call('HMGET', dkey, 'ns', 'session', 'source')
if d[1] ~= ns then return 0 end
redis.call('DEL', dkey)
if d[2] then redis.call('SREM', P .. 'sd:' .. d[2], id) end
if d[3] then redis.call('SREM', P .. 'kbd:' .. d[3], id) end
redis.call('ZREM', P .. 'nsd:' .. ns, doc_member(id))
redis.call('XADD', P .. 'log:' .. ns, '*', 'op', 'del', 'doc', id)
return 1
"""

# Upgrade of a Redis written before P nss: and P nsd: existed, batch by batch from a key scan: ARGV: P, then
# session ids. Puts each session still there in its namespace's list, at its last turn's time.
INDEX_SESSIONS = TOUCH_SESSION + """
local P = ARGV[1]
for i = 2, #ARGV do
  local sid = ARGV[i]
  local s = redis.call('HMGET', P .. 's:' .. sid, 'ns', 'created')
  if s[1] then
    touch_session(P, s[1], sid, false, s[2])
    local had = false
    for _, tid in ipairs(redis.call('ZRANGE', P .. 'st:' .. sid, 0, -1)) do
      local created = redis.call('HGET', P .. 't:' .. tid, 'created')
      if created then
        touch_session(P, s[1], sid, had, created)
        had = true
      end
    end
  end
end
return 0
"""

# The same for documents: ARGV: P, then document ids.
INDEX_DOCUMENTS = DOC_MEMBER + """
local P = ARGV[1]
for i = 2, #ARGV do
  local d = redis.call('HMGET', P .. 'd:' .. ARGV[i], 'ns', 'created')
  if d[1] and d[2] then redis.call('ZADD', P .. 'nsd:' .. d[1], d[2], doc_member(ARGV[i])) end
end
return 0
"""

# ARGV: P, session, then turn ids. Deletes each finished turn of the session (a regenerated or edited exchange
# replaces it) with the documents made of it, logged as dels; a turn still in the buffer leaves its count in
# P unflushed. Pending turns and other sessions' turns are left alone. Returns the documents removed.
SUPERSEDE_TURNS = DOC_MEMBER + """
local P, sid = ARGV[1], ARGV[2]
local flushed = tonumber(redis.call('HGET', P .. 's:' .. sid, 'flushed') or '0')
local sd = P .. 'sd:' .. sid
local docs = redis.call('SMEMBERS', sd)
local removed, buffered = 0, 0
for i = 3, #ARGV do
  local tid = ARGV[i]
  local tkey = P .. 't:' .. tid
  local t = redis.call('HMGET', tkey, 'session', 'status', 'seq')
  if t[1] == sid and t[2] ~= 'pending' then
    for _, id in ipairs(docs) do
      local dkey = P .. 'd:' .. id
      local d = redis.call('HMGET', dkey, 'turn', 'ns')
      if d[1] == tid then
        redis.call('DEL', dkey)
        redis.call('SREM', sd, id)
        redis.call('ZREM', P .. 'nsd:' .. d[2], doc_member(id))
        redis.call('XADD', P .. 'log:' .. d[2], '*', 'op', 'del', 'doc', id)
        removed = removed + 1
      end
    end
    if t[2] == 'complete' and tonumber(t[3]) > flushed then buffered = buffered + 1 end
    redis.call('DEL', tkey)
    redis.call('ZREM', P .. 'st:' .. sid, tid)
  end
end
if buffered > 0 and tonumber(redis.call('ZINCRBY', P .. 'unflushed', -buffered, sid)) <= 0 then
  redis.call('ZREM', P .. 'unflushed', sid)
end
return removed
"""

# ARGV: P, then 3 per turn: id, the details read, the details to write. A turn's details are replaced only while
# they are still what was read (a forgotten turn is not brought back; a newer write is kept).
REPLACE_DETAILS = """
local P = ARGV[1]
for i = 2, #ARGV, 3 do
  local key = P .. 't:' .. ARGV[i]
  if redis.call('HGET', key, 'details') == ARGV[i + 1] then redis.call('HSET', key, 'details', ARGV[i + 2]) end
end
return 0
"""
