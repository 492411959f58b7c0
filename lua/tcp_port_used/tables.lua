--- What this machine's socket tables say about one port, for explain
-- (explain.lua decides from it): every socket of the asked protocol on
-- that port, which of them serve the asked addresses, the other
-- protocol's sockets where none does, and the TIME_WAIT entries of
-- connections to it. Read through the C core (csrc/diag.c, procnet.c,
-- owner.c) with the backend listen mode chose (listen.lua), so a query
-- per address family, whatever the number of sockets on the machine;
-- only the naming of holders (pid, command) walks /proc.
local core = require "tcp_port_used.core"
local listen = require "tcp_port_used.listen"

local M = {}

local ipairs, next = ipairs, next
local covers, listeners = listen.covers, listen.listeners
local local_addresses, user_name, time_wait = core.local_addresses, core.user_name, core.time_wait

-- Connect mode sends a connection to 0.0.0.0 or :: to the loopback of that
-- family (listen.lua); so does explain.
local UNSPECIFIED = { ["0.0.0.0"] = "127.0.0.1", ["::"] = "::1" }

local OTHER = { tcp = "udp", udp = "tcp" }

-- A uid's name rarely changes while a program runs; NSS may be slow.
local names = {}
local function name_of(uid)
  local n = names[uid]
  if n == nil then
    n = user_name(uid) or false
    names[uid] = n
  end
  return n or nil
end

-- The entries of explain's `listeners` for kernel list ls of proto.
local function entries(ls, proto)
  local out = {}
  for i, l in ipairs(ls) do
    out[i] = { address = l.address, port = l.port, family = l.family, proto = proto,
               uid = l.uid, user = name_of(l.uid), queue = l.queue, backlog = l.backlog,
               inode = l.inode }
  end
  return out
end

--- Names the holders of entries (pid, command: of those that share a
-- socket, the one the others descend from, as owner does) by one walk of /proc; a socket
-- whose holder may not be read keeps no pid. Drops the inodes.
function M.name_holders(list)
  local inodes = {}
  for _, e in ipairs(list) do inodes[e.inode] = true end
  local holders = next(inodes) ~= nil and core.socket_holders(inodes) or nil
  for _, e in ipairs(list) do
    local hs = holders and holders[e.inode]
    if hs then
      local best = listen.principal_first(hs)[1]
      e.pid, e.command = best.pid, best.command
    end
  end
end

--- Removes the inodes, which only served name_holders.
function M.finish(list)
  for _, e in ipairs(list) do e.inode = nil end
end

-- The sockets serving the targets by exact lookups (netlink only), each
-- once, or nil where none does or the lookups cannot answer.
local function served(host, port, proto)
  if listen.backend(nil, proto) ~= "netlink" then return nil end
  local found = core.listen_sockets(UNSPECIFIED[host] or host, port, proto)
  if not found or #found == 0 then return nil end
  local out, seen = {}, {}
  for _, l in ipairs(found) do
    if not seen[l.inode] then
      seen[l.inode] = true
      out[#out + 1] = l
    end
  end
  return out
end

--- read(host, port, proto [, all]): the tables for host:port (host nil:
-- both loopbacks) as { targets, family = { inet =, inet6 = }, listeners,
-- matched, time_wait, served }, where targets are the asked addresses,
-- listeners every socket of proto on port (of the other protocol, with
-- proto marked, when none of proto is there), matched those serving a
-- target, and time_wait the TIME_WAIT count (TCP; read only when nothing
-- serves a target). Where exact lookups find the sockets serving the
-- targets, and all is not set, listeners holds only those and served is
-- true: a port that answers needs no list of everything else, and the
-- dumps cost several times a lookup. nil, why when the tables cannot
-- tell: "remote" (an address of host is not this machine's, or host does
-- not resolve), or the code of the failure ("ENOTSUP" on a system
-- without listen mode).
function M.read(host, port, proto, all)
  local r = { local_addresses(UNSPECIFIED[host] or host) }
  if r[1] == nil then return nil, "remote" end
  local targets, family = {}, {}
  for i = 1, #r, 2 do
    if r[i] ~= true then return nil, "remote" end
    local a = r[i + 1]
    targets[#targets + 1] = a
    family[a:find(":", 1, true) and "inet6" or "inet"] = true
  end
  local fast = not all and served(host, port, proto)
  if fast then
    fast = entries(fast, proto)
    return { targets = targets, family = family, listeners = fast, matched = fast, served = true }
  end
  local ls, code = listeners(port, port, proto)
  if not ls then return nil, code end
  local t = { targets = targets, family = family, listeners = entries(ls, proto), matched = {} }
  for _, l in ipairs(t.listeners) do
    for _, a in ipairs(targets) do
      if covers(l, a, port, proto) then
        t.matched[#t.matched + 1] = l
        break
      end
    end
  end
  if #t.matched == 0 then
    if #t.listeners == 0 then
      local other = OTHER[proto]
      local ols = listeners(port, port, other)
      if ols then t.listeners = entries(ols, other) end
    end
    t.time_wait = 0
    if proto == "tcp" then
      t.time_wait = time_wait(port, listen.backend(nil, "tcp") or "netlink") or 0
    end
  end
  return t
end

return M
