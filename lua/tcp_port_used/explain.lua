--- explain: why a port is (not) ready, in one sentence a person can act
-- on. The one decision, pure Lua, used by the core module, both adapters
-- and the waits' timeouts: from the asked place, this machine's socket
-- tables (tables.lua; nil where they are not read) and the one probe
-- made, it picks a state and words it. For a local host the tables decide
-- and the probe confirms; for a remote one (or where the tables are not
-- read) the probe alone decides.
local words = require "tcp_port_used.words"
local hosts = require "tcp_port_used.hosts"

local M = {}

local ipairs, concat, format = ipairs, table.concat, string.format

-- Probe codes that say the host could not be reached at all.
local UNREACHABLE = { EHOSTUNREACH = true, ENETUNREACH = true, EHOSTDOWN = true, ENETDOWN = true }

local NOT_READ = {
  ENOTSUP = "the kernel's socket tables are not read on this system",
  core = "the kernel's socket tables are not read (the C core tcp_port_used.core is not installed)",
}

-- "127.0.0.1:5432", "[::1]:5432", "db:5432".
local function at(host, port)
  return words.where(host, port, host and hosts.bare(host) or nil) or ""
end

local function where_listener(l)
  return at(l.address, l.port)
end

--- Where the asked place is, in words: "127.0.0.1:5432", "db:5432", or
-- for no host "127.0.0.1:5432 or [::1]:5432".
function M.where(host, port)
  if host == nil then return "127.0.0.1:" .. port .. " or [::1]:" .. port end
  if hosts.is_name(host) then return hosts.bare(host) .. ":" .. port end
  return at(host, port)
end

-- The name a person knows a program by: its command's first word,
-- without the directory.
local function program(command)
  local first = command:match("^(%S+)") or command
  return first:match("([^/]+)$") or first
end

-- "postgres (pid 812, user postgres)", or where its process is not known
-- "a socket of user postgres".
local function who(l)
  local user = l.user or ("uid " .. tostring(l.uid))
  if l.pid then return format("%s (pid %d, user %s)", program(l.command or "?"), l.pid, user) end
  return "a socket of " .. (l.user and "user " .. user or user)
end

-- f(l) of each socket of list, each phrase once, joined; and whether
-- there were several.
local function joined(list, f)
  local out, seen = {}, {}
  for _, l in ipairs(list) do
    local w = f(l)
    if not seen[w] then
      seen[w] = true
      out[#out + 1] = w
    end
  end
  return concat(out, " and "), #out > 1
end

local function places(list)
  return (joined(list, where_listener))
end

-- "postgres (pid 812, user postgres) listens on [::1]:5432" and the like:
-- who, the verb (singular, plural), where.
local function says(list, one, many, what)
  local w, plural = joined(list, who)
  return w .. " " .. (plural and many or one) .. " " .. (what or places(list))
end

local function full(l)
  return l.queue and l.backlog and l.queue > l.backlog
end

local function exchange(ready)
  return type(ready) == "string" and ready .. " exchange" or "ready function's exchange"
end

-- The probe-only state of a failed probe (code, operation) and the gloss.
local function failed(code, op, timeout_ms)
  if op == "resolve" then return "no-name", "the name does not resolve" end
  if code == "ETIMEDOUT" then
    return "filtered", format("no answer within %s ms (a firewall drops the packets, or the " ..
      "host is down or too busy to answer)", tostring(timeout_ms))
  end
  if UNREACHABLE[code] then return "unreachable", "no route to that host from here" end
  return "error", nil
end

-- Whether host, as a person reads it, names this machine: what a note
-- about unread tables is worth adding to.
local function looks_local(host)
  if host == nil then return true end
  local b = hosts.bare(host)
  return b == "localhost" or b == "::1" or b == "::" or b == "0.0.0.0" or b:match("^127%.") ~= nil
end

-- The explanation from the probe alone.
local function by_probe(o, where, probe, note)
  local r, err, code, op = probe[1], probe[2], probe[3], probe[4]
  local state, text
  if r == true then
    state = "listening"
    text = o.ready and where .. " answered ready" or "something accepts connections on " .. where
    if o.proto == "udp" then text = "a socket is bound to UDP " .. where end
  elseif r == false and err ~= nil then
    state, text = "not-ready", where .. " listens but is not ready: " .. err
  elseif r == false then
    if o.proto == "udp" then
      state, text = "not-listening", "no socket is bound to UDP " .. where
    else
      state = "refused"
      text = where .. " refused the connection: " .. (looks_local(o.host) and "nothing listens there"
        or "the host answered, but nothing listens on port " .. o.port .. " there")
    end
  elseif o.ready and (op == "send" or op == "receive") then
    -- connected: something listens, and its answer was not the exchange's
    state, text = "not-ready", where .. " listens, but the " .. exchange(o.ready) ..
      " did not answer ready: " .. tostring(err)
  else
    local gloss
    state, gloss = failed(code, op, o.timeout_ms)
    text = tostring(err) .. (gloss and " (" .. gloss .. ")" or "")
  end
  if note then text = text .. "; " .. note end
  return state, text
end

-- The explanation from the tables t, confirmed by the probe.
local function by_tables(o, where, t, probe, want)
  local r, err, code, op = probe[1], probe[2], probe[3], probe[4]
  local matched, port = t.matched, o.port
  local proto = o.proto == "udp" and "UDP" or "TCP"
  if #matched > 0 then
    if o.proto == "udp" or r == true then
      if want == false then return "listening", says(matched, "still listens on", "still listen on") end
      if o.proto == "udp" then return "listening", says(matched, "is bound to", "are bound to") end
      if o.ready then return "listening", says(matched, "answers ready on", "answer ready on") end
      return "listening", says(matched, "accepts connections on", "accept connections on")
    end
    local h = says(matched, "listens on", "listen on")
    if r == false and err ~= nil then
      return "not-ready", h .. " but is not ready: " .. err
    end
    for _, l in ipairs(matched) do
      if full(l) then
        return "backlog-full", format("%s but does not accept: its accept queue is full " ..
          "(%d waiting, backlog %d), so connections hang or are dropped", says({ l }, "listens on"),
          l.queue, l.backlog)
      end
    end
    if r == false then
      return "not-listening", h .. " (so the kernel lists it), but the connection was " ..
        "refused (it may have just closed)"
    end
    if o.ready then
      return "not-ready", h .. ", but the " .. exchange(o.ready) .. " did not answer ready: " ..
        tostring(err)
    end
    local state = failed(code, op, o.timeout_ms)
    return state, h .. ", yet " .. tostring(err)
  end
  if r == true and o.proto ~= "udp" then
    return "listening", "something accepts connections on " .. where .. ", though no socket " ..
      "of this machine listens there (a redirect by the firewall, or a proxy)"
  end
  local ls = t.listeners
  local asked_proto = {}
  for _, l in ipairs(ls) do
    if l.proto == o.proto then asked_proto[#asked_proto + 1] = l end
  end
  if #asked_proto > 0 then
    local same = false
    for _, l in ipairs(asked_proto) do
      if t.family[l.family] then same = true end
    end
    local text = says(asked_proto, "listens on", "listen on") .. " only; nothing on " .. where
    return same and "other-address" or "other-family", text
  end
  if #ls > 0 then
    local other = o.proto == "udp" and "TCP" or "UDP"
    return "other-proto", format("nothing %s %s %s; %s (on %s)", o.proto == "udp" and
      "is bound to" or "listens on", proto, where,
      says(ls, "holds", "hold", other .. " port " .. port), places(ls))
  end
  local text = o.proto == "udp" and "no socket is bound to UDP port " .. port .. " on this machine"
    or "nothing listens on port " .. port .. " on this machine"
  local tw = t.time_wait or 0
  if tw > 0 then
    text = text .. format("; %d connection%s to it %s in TIME_WAIT (a server was there, and " ..
      "its last clients left less than a minute ago)", tw, tw == 1 and "" or "s",
      tw == 1 and "is" or "are")
  end
  if r == nil then text = text .. " (the probe: " .. tostring(err) .. ")" end
  return "not-listening", text
end

--- decide(o, port, t, why, probe [, want]) -> the explanation table.
-- o: normalized check options (host, proto, ready, timeout_ms); t: the
-- tables (tables.lua) or nil, and then why they were not read ("remote",
-- "ENOTSUP", "core", or a failure's code); probe: the probe's values,
-- packed ({ true } / { false [, reason] } / { nil, err, code, op }); want:
-- false for the timeout of wait_until_free (the text says who still
-- holds the port).
function M.decide(o, port, t, why, probe, want)
  local where = o.unix or M.where(o.host, port)
  local asked = { host = o.host, port = port, proto = o.proto or "tcp" }
  local oo = { host = o.host, port = port, proto = asked.proto, ready = o.ready,
               timeout_ms = o.attempt_ms or o.timeout_ms, unix = o.unix }
  local state, text
  if t then
    state, text = by_tables(oo, where, t, probe, want)
  else
    local note = NOT_READ[why] or (why ~= "remote" and why ~= nil and
      "the kernel's socket tables could not be read (" .. words.text("listen", why) .. ")")
    if not looks_local(o.host) then note = nil end
    state, text = by_probe(oo, where, probe, note)
  end
  local p = { probe[1], probe[2], probe[3] }
  if p[1] == true then p = { true } elseif p[1] == false then p = { false, probe[2] } end
  return { state = state, text = text, asked = asked, listeners = t and t.listeners or {},
           time_wait = t and t.time_wait or nil, probe = p }
end

local function pack(...)
  return { n = select("#", ...), ... }
end

--- explainer(T): explain(o, port, probe, want) -> the explanation of
-- port for the normalized options o, from the probe already made (the
-- packed values of a probe, or a function that makes it once the tables
-- are read: its own probe must not count among the TIME_WAIT entries)
-- and the tables module T (tables.lua), or without the tables where T is
-- nil (the luv adapter without the C core). Every socket on the port is
-- listed and its holder named (a walk of /proc) unless the port simply
-- accepts, as a successful check would show: they are the answer to
-- every other state, and to wait_until_free's timeout (want false).
function M.explainer(T)
  return function(o, port, probe, want)
    local t, why
    if not T then
      why = "core"
    elseif o.unix then
      why = "remote"
    else
      t, why = T.read(o.host, port, o.proto or "tcp")
    end
    if type(probe) == "function" then probe = pack(probe()) end
    local e = M.decide(o, port, t, why, probe, want)
    if t then
      if e.state ~= "listening" or want == false then
        -- every socket on the port, named
        if t.served then t = T.read(o.host, port, o.proto or "tcp", true) or t end
        T.name_holders(t.listeners)
        e = M.decide(o, port, t, why, probe, want)
      end
      T.finish(t.listeners)
    end
    return e
  end
end

--- The message of a wait (options o) that timed out while port and more
-- others were pending, ending with the explanation e of port.
function M.timeout_message(o, port, more, e)
  return format("timeout after %s ms waiting for %s%s: %s", tostring(o.timeout_ms),
    o.unix or M.where(o.host, port), more > 0 and format(" (and %d more)", more) or "", e.text)
end

return M
