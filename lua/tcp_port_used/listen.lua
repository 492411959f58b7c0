--- Listen mode and owner: whether a socket listens on a port of this
-- machine, and which process holds it, asked of the kernel (csrc/diag.c,
-- procnet.c, owner.c) so that no connection reaches the server. For TCP
-- a listening socket is one in LISTEN; for UDP one that is bound and not
-- connected (it receives datagrams from anyone, as a server's does).
--
-- Backends: NETLINK_SOCK_DIAG (an exact lookup for one port, a dump
-- filtered in the kernel for "*" and for many ports), and where a sandbox
-- refuses netlink, /proc/net/tcp and tcp6 (udp and udp6: correct, but
-- reading them walks every socket of the machine). The choice is made
-- once per protocol and Lua state, by asking netlink to find a listener
-- of our own (core.diag_check): a kernel may have tcp_diag without
-- udp_diag. TPU_LISTEN_BACKEND=proc or =netlink in the environment forces
-- one. A core built for a system other than Linux has neither:
-- diag_check answers ENOTSUP, and so does every query here, forced or not.
local core = require "tcp_port_used.core"
local verdict = require "tcp_port_used.verdict"
local words = require "tcp_port_used.words"
local pack = require("tcp_port_used.pack").pack

local M = {}

local ipairs, pairs = ipairs, pairs
local listen_exact, listeners, local_addresses = core.listen_exact, core.listeners, core.local_addresses
local core_bind = core.bind

local forced = os.getenv("TPU_LISTEN_BACKEND")
if forced ~= "proc" and forced ~= "netlink" then forced = nil end
-- The backend chosen for each protocol, where none is forced.
local chosen = {}

-- What a refused or absent NETLINK_SOCK_DIAG answers; /proc takes over.
local REFUSED = {
  EPERM = true, EACCES = true, EPROTONOSUPPORT = true, EAFNOSUPPORT = true,
  EOPNOTSUPP = true,
}

--- The backend in use for proto ("tcp" when omitted): "netlink", "proc",
-- or nil before the first query decided. backend(name) forces one
-- ("netlink" or "proc") for both protocols; backend(false) returns to
-- choosing by itself.
function M.backend(name, proto)
  if name == false then
    forced, chosen = nil, {}
  elseif name ~= nil then
    if name ~= "netlink" and name ~= "proc" then
      error("bad argument #1 to 'backend' (\"netlink\" or \"proc\" expected, got " .. tostring(name) .. ")", 2)
    end
    forced, chosen = name, {}
  end
  return forced or chosen[proto or "tcp"]
end

-- The backend to use now for proto, or nil, code where listen mode
-- cannot work. A forced backend is taken only from a core that has listen
-- mode at all.
local function choose(proto)
  local b = chosen[proto]
  if b then return b end
  local ok, code = core.diag_check(proto)
  if code == "ENOTSUP" then
    return nil, code
  elseif forced then
    b = forced
  elseif ok then
    b = "netlink"
  elseif REFUSED[code] then
    b = "proc"
  else
    return nil, code
  end
  chosen[proto] = b
  return b
end

--- listeners(lo, hi [, proto]): the listening sockets of proto (default
-- "tcp") with lo <= port <= hi, or nil, code. Before a backend is chosen
-- the dump itself chooses, without choose's self-test: a kernel without
-- the diag module of proto fails a dump (ENOENT), where an exact lookup
-- would only say "none" (so one query per family, however many ports).
local function list_listeners(lo, hi, proto)
  proto = proto or "tcp"
  if not forced and not chosen[proto] then
    local ls, code = listeners(lo, hi, "netlink", proto)
    if ls then
      chosen[proto] = "netlink"
      return ls
    end
    if not (REFUSED[code] or code == "ENOENT") then return nil, code end
    chosen[proto] = "proc"
  end
  local b, code = choose(proto)
  if not b then return nil, code end
  return listeners(lo, hi, b, proto)
end
M.listeners = list_listeners

-- Connect mode on Linux sends a connection to 0.0.0.0 or :: to the
-- loopback of that family; listen mode answers the same question.
local UNSPECIFIED = { ["0.0.0.0"] = "127.0.0.1", ["::"] = "::1", ["[::]"] = "::1" }

-- Whether a connection (a datagram for UDP) to address (of family v6 or
-- not, an address of this machine) on port would reach listener l of
-- proto. A [::] listener serves IPv4 too unless it is V6ONLY; where the
-- backend cannot tell (/proc), a bind probe on the IPv4 address asks the
-- kernel, which refuses it exactly when [::] covers it.
local function covers(l, address, port, proto)
  if not address:find(":", 1, true) then
    if l.family == "inet" then return l.address == address or l.address == "0.0.0.0" end
    if l.address == "::ffff:" .. address then return true end
    if l.address ~= "::" then return false end
    if l.v6only == nil then return core_bind(address, port, proto) == true end
    return not l.v6only
  end
  return l.family == "inet6" and (l.address == address or l.address == "::")
end

-- For explain (tables.lua): the same test of which asked address a
-- listener serves.
M.covers = covers

--- outcomes(host, port [, proto]): the outcome pairs of a listen probe
-- (see verdict.lua): per address of host (nil: both loopbacks; "*": any
-- local address, one pair for all), true when a connection (a datagram,
-- proto "udp") there would reach a listening socket, false when none
-- would, or a code (EADDRNOTAVAIL: not an address of this machine).
function M.outcomes(host, port, proto)
  proto = proto or "tcp"
  local b, code = choose(proto)
  if not b then
    -- no backend: the code stands for host's first address
    if host == "*" then return code, "*" end
    local addrs = pack(local_addresses(UNSPECIFIED[host] or host))
    if addrs[1] == nil then return nil, addrs[2] end
    return code, addrs[2]
  end
  if host == "*" then
    local ls, err = listeners(port, port, b, proto)
    if not ls then return err, "*" end
    return #ls > 0, "*"
  end
  host = UNSPECIFIED[host] or host
  if b == "netlink" then return listen_exact(host, port, proto) end
  local addrs = pack(local_addresses(host))
  if addrs[1] == nil then return nil, addrs[2] end
  local ls, lcode = listeners(port, port, "proc", proto)
  for i = 1, addrs.n, 2 do
    if addrs[i] == true then
      if not ls then
        addrs[i] = lcode
      else
        local hit = false
        for _, l in ipairs(ls) do
          if covers(l, addrs[i + 1], port, proto) then hit = true break end
        end
        addrs[i] = hit
      end
    end
  end
  return (table.unpack or unpack)(addrs, 1, addrs.n) -- luacheck: ignore 143
end

-- The local addresses of host as a list, "*" for any, or nil, err, code
-- (the verdict's words) when one is not an address of this machine.
local function targets_of(host, port)
  if host == "*" then return "*" end
  local addrs = pack(local_addresses(UNSPECIFIED[host] or host))
  if addrs[1] == nil then
    return verdict.answer("listen", host, port, core.ipv6, nil, addrs[2])
  end
  local list, bad = {}, {}
  for i = 1, addrs.n, 2 do
    if addrs[i] == true then
      list[#list + 1] = addrs[i + 1]
    else
      bad[#bad + 1], bad[#bad + 2] = addrs[i], addrs[i + 1]
    end
  end
  if #bad > 0 then
    local r, err, code, op = verdict.answer("listen", host, port, core.ipv6,
      (table.unpack or unpack)(bad)) -- luacheck: ignore 143
    if r == nil and (#list == 0 or code ~= "EAFNOSUPPORT") then return nil, err, code, op end
  end
  return list
end

-- The listeners of proto in ls on a wanted port that host's targets see.
local function matching(ls, targets, port_wanted, proto)
  local out = {}
  for _, l in ipairs(ls) do
    if port_wanted(l.port) then
      local hit = targets == "*"
      if not hit then
        for _, a in ipairs(targets) do
          if covers(l, a, l.port, proto) then hit = true break end
        end
      end
      if hit then out[#out + 1] = l end
    end
  end
  return out
end

local function listen_error(code, host, port)
  return nil, words.message("listen", words.where(host or "*", port, nil), code), code, "listen"
end

--- check_many(list, host [, proto]): the shape of check_many's modes:
-- used, errors, codes, with used[port] true or false for every port in
-- list, from one query per address family whatever the number of ports;
-- or nil, err, code for the whole call.
function M.check_many(list, host, proto)
  proto = proto or "tcp"
  local targets, err, code = targets_of(host, list[1])
  if not targets then return nil, err, code end
  local wanted, lo, hi = {}, 65535, 1
  for i = 1, #list do
    local p = list[i]
    wanted[p] = true
    if p < lo then lo = p end
    if p > hi then hi = p end
  end
  local ls, lcode = list_listeners(lo, hi, proto)
  -- one query answers every port: its failure is the whole call's
  if not ls then return listen_error(lcode, host, lo) end
  -- each port's outcomes, one per target address, go through the
  -- verdict as check's do
  local seen, all = {}, targets == "*" and { "*" } or targets
  for _, l in ipairs(ls) do
    if wanted[l.port] then
      for _, a in ipairs(all) do
        if a == "*" or covers(l, a, l.port, proto) then
          seen[l.port] = seen[l.port] or {}
          seen[l.port][a] = true
        end
      end
    end
  end
  local used, errs, codes, outcomes = {}, {}, {}, {}
  local answer_list = verdict.answer_list
  for p in pairs(wanted) do
    local hit = seen[p]
    for i, a in ipairs(all) do
      outcomes[2 * i - 1], outcomes[2 * i] = hit ~= nil and hit[a] == true, a
    end
    used[p], errs[p], codes[p] = answer_list("listen", host, p, core.ipv6, outcomes, 2 * #all)
  end
  return used, errs, codes
end

-- The parent pid of process pid, from /proc/PID/stat (after the command,
-- which may hold spaces and parentheses), or nil.
local function parent_of(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local stat = f:read("*l")
  f:close()
  return tonumber(stat and stat:match("%) %S+ (%d+)"))
end

--- principal_first(hs): sorts the holders { pid, command } of one socket
-- so that the process the others descend from comes first (a server's
-- master before its workers, whose parent holds the socket too), then by
-- pid. Not the lowest pid alone: pids wrap, and a worker may get a lower
-- one than its master.
function M.principal_first(hs)
  if #hs < 2 then return hs end
  -- 1: its parent holds none of it; 2: gone since (a backend forked for
  -- a connection that has already ended); 3: its parent holds it too
  local holding, rank = {}, {}
  for _, h in ipairs(hs) do holding[h.pid] = true end
  for _, h in ipairs(hs) do
    local parent = parent_of(h.pid)
    rank[h.pid] = parent == nil and 2 or holding[parent] and 3 or 1
  end
  table.sort(hs, function(a, b)
    if rank[a.pid] ~= rank[b.pid] then return rank[a.pid] < rank[b.pid] end
    return a.pid < b.pid
  end)
  return hs
end

local NOT_INSPECTABLE, NOT_FOUND = words.NOT_INSPECTABLE, words.NOT_FOUND

--- owner(port [, host [, proto]]): one entry per listening socket of
-- proto (default "tcp") on port that host sees (host nil: any local
-- address, as "*"), as { address, family, port, proto, uid, inode, pid,
-- command, pids }, the master first when several processes share the
-- socket (a server's master and its workers: principal_first); pid and command nil, with
-- `reason`, where the holder may not be inspected. An empty list when
-- nothing listens; nil, err, code on failure.
function M.owner(port, host, proto)
  proto = proto or "tcp"
  local targets, err, code = targets_of(host or "*", port)
  if not targets then return nil, err, code end
  local ls, lcode = list_listeners(port, port, proto)
  if not ls then return listen_error(lcode, host, port) end
  ls = matching(ls, targets, function() return true end, proto)
  if #ls == 0 then return ls end
  local inodes = {}
  for _, l in ipairs(ls) do inodes[l.inode] = true end
  local holders, denied = core.socket_holders(inodes)
  if not holders then
    return nil, words.message("owner", "/proc", denied), denied, "owner"
  end
  local out = {}
  for i, l in ipairs(ls) do
    local hs = holders[l.inode]
    local e = { address = l.address, family = l.family, port = l.port, proto = proto, uid = l.uid,
                inode = l.inode }
    if hs then
      M.principal_first(hs)
      e.pid, e.command, e.pids = hs[1].pid, hs[1].command, {}
      for k, h in ipairs(hs) do e.pids[k] = h.pid end
    else
      e.reason = denied > 0 and NOT_INSPECTABLE or NOT_FOUND
    end
    out[i] = e
  end
  return out
end

--- describe(entry): one line for people about an entry of owner (words.holder).
M.describe = words.holder

return M
