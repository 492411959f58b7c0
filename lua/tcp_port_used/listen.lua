--- Listen mode and owner: whether a socket listens on a port of this
-- machine, and which process holds it, asked of the kernel (csrc/listen.c)
-- so that no connection reaches the server.
--
-- Backends: NETLINK_SOCK_DIAG (an exact lookup for one port, a dump
-- filtered in the kernel for "*" and for many ports), and where a sandbox
-- refuses netlink, /proc/net/tcp and tcp6 (correct, but reading them walks
-- every socket of the machine). TPU_LISTEN_BACKEND=proc or =netlink in the
-- environment forces one.
local core = require "tcp_port_used.core"

local M = {}

local ipairs, pairs = ipairs, pairs
local listen_exact, listeners, listen_targets = core.listen_exact, core.listeners, core.listen_targets
local core_bind = core.bind

local forced = os.getenv("TPU_LISTEN_BACKEND")
if forced ~= "proc" and forced ~= "netlink" then forced = nil end
local backend = forced

-- What a refused or absent NETLINK_SOCK_DIAG answers; /proc takes over.
local REFUSED = {
  EPERM = true, EACCES = true, EPROTONOSUPPORT = true, EAFNOSUPPORT = true,
  EOPNOTSUPP = true,
}

--- The backend in use: "netlink", "proc", or nil before the first query
-- decided. backend(name) forces one ("netlink" or "proc"); backend(false)
-- returns to choosing by itself.
function M.backend(name)
  if name == false then
    forced, backend = nil, nil
  elseif name ~= nil then
    if name ~= "netlink" and name ~= "proc" then
      error("bad argument #1 to 'backend' (\"netlink\" or \"proc\" expected, got " .. tostring(name) .. ")", 2)
    end
    forced, backend = name, name
  end
  return backend
end

-- Runs fn() on netlink unless /proc was chosen; falls back to proc_fn()
-- for good when netlink is refused and no backend is forced.
local function with_backend(fn, proc_fn)
  if backend ~= "proc" then
    local r, err, code, where = fn()
    if r ~= nil then
      backend = "netlink"
      return r
    end
    if where ~= "netlink" or forced or not REFUSED[code] then return nil, err, code end
    backend = "proc"
  end
  return proc_fn()
end

local function list_listeners(lo, hi)
  return with_backend(function() return listeners(lo, hi) end,
    function() return listeners(lo, hi, "proc") end)
end
M.listeners = list_listeners

-- Connect mode on Linux sends a connection to 0.0.0.0 or :: to the
-- loopback of that family; listen mode answers the same question.
local UNSPECIFIED = { ["0.0.0.0"] = "127.0.0.1", ["::"] = "::1", ["[::]"] = "::1" }

-- Whether a connection to target (an address of this machine) on port
-- would reach listener l. A [::] listener serves IPv4 too unless it is
-- V6ONLY; where the backend cannot tell (/proc), a bind probe on the IPv4
-- address asks the kernel, which refuses it exactly when [::] covers it.
local function covers(l, t, port)
  if t.family == "inet" then
    if l.family == "inet" then return l.address == t.address or l.address == "0.0.0.0" end
    if l.address == "::ffff:" .. t.address then return true end
    if l.address ~= "::" then return false end
    if l.v6only == nil then return core_bind(t.address, port) == true end
    return not l.v6only
  end
  return l.family == "inet6" and (l.address == t.address or l.address == "::")
end

-- For each listener in ls on a wanted port: whether host's targets see
-- it ("*": every listener counts).
local function matching(ls, targets, port_wanted)
  local out = {}
  for _, l in ipairs(ls) do
    if port_wanted(l.port) then
      local hit = targets == "*"
      if not hit then
        for _, t in ipairs(targets) do
          if covers(l, t, l.port) then hit = true break end
        end
      end
      if hit then out[#out + 1] = l end
    end
  end
  return out
end

local function targets_of(host)
  if host == "*" then return "*" end
  return listen_targets(UNSPECIFIED[host] or host)
end

--- check(host, port): true when a connection to host:port would reach a
-- listening socket (host nil: 127.0.0.1 or ::1; "*": any local address),
-- false when none would, nil, err, code when it cannot be told (a host
-- that is not an address of this machine, a malformed kernel reply).
function M.check(host, port)
  if host == "*" then
    local ls, err, code = list_listeners(port, port)
    if not ls then return nil, err, code end
    return #ls > 0
  end
  host = UNSPECIFIED[host] or host
  return with_backend(function() return listen_exact(host, port) end, function()
    local targets, err, code = listen_targets(host)
    if not targets then return nil, err, code end
    local ls, lerr, lcode = listeners(port, port, "proc")
    if not ls then return nil, lerr, lcode end
    return #matching(ls, targets, function() return true end) > 0
  end)
end

--- check_many(list, host): the shape of check_many's modes: used, errors,
-- codes, with used[port] true or false for every port in list, from one
-- query per address family whatever the number of ports; or nil, err,
-- code for the whole call.
function M.check_many(list, host)
  local targets, err, code = targets_of(host)
  if not targets then return nil, err, code end
  local wanted, lo, hi = {}, 65535, 1
  for i = 1, #list do
    local p = list[i]
    wanted[p] = true
    if p < lo then lo = p end
    if p > hi then hi = p end
  end
  local ls, lerr, lcode = list_listeners(lo, hi)
  if not ls then return nil, lerr, lcode end
  local used = {}
  for p in pairs(wanted) do used[p] = false end
  for _, l in ipairs(matching(ls, targets, function(p) return wanted[p] end)) do
    used[l.port] = true
  end
  return used, {}, {}
end

local NOT_INSPECTABLE = "held by a process this one may not inspect (another user's)"
local NOT_FOUND = "no process holds it now (it may have just exited)"

--- owner(port [, host]): one entry per listening socket on port that host
-- sees (host nil: any local address, as "*"), as { address, port, uid,
-- inode, pid, command, pids }, lowest pid first when several processes
-- share the socket (a server's master and its workers); pid and command
-- nil, with `reason`, where the holder may not be inspected. An empty
-- list when nothing listens; nil, err, code on failure.
function M.owner(port, host)
  local targets, err, code = targets_of(host or "*")
  if not targets then return nil, err, code end
  local ls, lerr, lcode = list_listeners(port, port)
  if not ls then return nil, lerr, lcode end
  ls = matching(ls, targets, function() return true end)
  if #ls == 0 then return ls end
  local inodes = {}
  for _, l in ipairs(ls) do inodes[l.inode] = true end
  local holders, denied, hcode = core.socket_holders(inodes)
  if not holders then return nil, denied, hcode end
  local out = {}
  for i, l in ipairs(ls) do
    local hs = holders[l.inode]
    local e = { address = l.address, family = l.family, port = l.port, uid = l.uid, inode = l.inode }
    if hs then
      table.sort(hs, function(a, b) return a.pid < b.pid end)
      e.pid, e.command, e.pids = hs[1].pid, hs[1].command, {}
      for k, h in ipairs(hs) do e.pids[k] = h.pid end
    else
      e.reason = denied > 0 and NOT_INSPECTABLE or NOT_FOUND
    end
    out[i] = e
  end
  return out
end

--- describe(entry): one line for people about an entry of owner, as the
-- CLI's `who` prints it: "8080 on 127.0.0.1 is held by pid 1234 (nginx:
-- master process)", or "... is held by uid 33 (pid unknown: reason)".
function M.describe(e)
  local where = string.format("%d on %s", e.port, e.address)
  if e.pid then
    return string.format("%s is held by pid %d (%s)", where, e.pid, e.command)
  end
  return string.format("%s is held by uid %d (pid unknown: %s)", where, e.uid, e.reason)
end

return M
