--- The OpenResty transport: cosocket connects (ngx.socket.tcp) to
-- addresses of other machines, and the C core's probe for this machine's
-- own addresses. A cosocket does not show its local address, so it could
-- not tell a connect that reached itself (TCP's simultaneous open on a
-- free port of the ephemeral range) from a server; that can only happen
-- on a local address, where the core's probe, polled between ngx.sleep
-- calls, never blocks the worker and answers truly. Bind and listen
-- probes (TCP and UDP: cosockets cannot bind, and a UDP port is probed
-- only by binding it or asking the kernel, neither of which waits), and
-- connects that must close with a reset (cosockets cannot), go through
-- the core too. It reports outcomes and decides nothing.
-- The streams of readiness exchanges follow the same rule: cosockets to
-- other machines and to Unix-domain sockets ("unix:/path"), the core's
-- stream (polled between ngx.sleep calls) to this machine's addresses.
-- luacheck: read globals ngx
local core = require "tcp_port_used.core"
local core_transport = require "tcp_port_used.transport.core"
local stream = require "tcp_port_used.transport.stream"

local M = {}

local max, ceil = math.max, math.ceil
local pack, unpack = require("tcp_port_used.pack").pack, require("tcp_port_used.pack").unpack
local now, local_addresses = core.now, core.local_addresses

-- lua-nginx-module reports a failed connect with strerror()'s words (a
-- lower-case first letter); the transport's one job here is to turn its
-- native report into the code every transport reports.
local CODES = {
  ["connection refused"] = false,
  ["timeout"] = "ETIMEDOUT",
  ["no route to host"] = "EHOSTUNREACH",
  ["network is unreachable"] = "ENETUNREACH",
  ["host is down"] = "EHOSTDOWN",
  ["network is down"] = "ENETDOWN",
  ["permission denied"] = "EACCES",
  ["operation not permitted"] = "EPERM",
  ["cannot assign requested address"] = "EADDRNOTAVAIL",
  ["address family not supported by protocol"] = "EAFNOSUPPORT",
  ["too many open files"] = "EMFILE",
  ["too many open files in system"] = "ENFILE",
  ["no buffer space available"] = "ENOBUFS",
  ["connection reset by peer"] = "ECONNRESET",
  ["no memory"] = "ENOMEM",
  ["no such file or directory"] = "ENOENT",
  ["broken pipe"] = "EPIPE",
  -- a read or write after the peer closed
  ["closed"] = "ECONNRESET",
}

-- The code of a cosocket's error text (false: refused).
local function code_of(err)
  local code = CODES[err]
  if code == nil then return "EUNKNOWN" end
  return code
end

-- Connects sock to address:port (an IPv6 literal in brackets).
local function connect_to(sock, address, port)
  return sock:connect(address:find(":", 1, true) and "[" .. address .. "]" or address, port)
end

-- One cosocket connect: true, false (refused) or a code.
local function cosocket(address, port, budget)
  local sock = ngx.socket.tcp()
  sock:settimeout(max(1, ceil(budget)))
  local ok, err = connect_to(sock, address, port)
  if ok then
    -- an ordinary close (FIN): the server logs nothing
    sock:close()
    return true
  end
  return code_of(err)
end

--- connect(host, port, budget, close, sleep): outcome pairs. sleep is
-- ngx.sleep in milliseconds where cosockets work; nil where they do not
-- (init, init_worker), and the core's probe then blocks for at most the
-- budget, as those phases allow.
function M.connect(host, port, budget, close, sleep)
  local addrs = pack(local_addresses(host))
  if addrs[1] == nil then return nil, addrs[2] end
  local due, out = now() + budget, {}
  for i = 1, addrs.n, 2 do
    local address, left = addrs[i + 1], max(1, due - now())
    if addrs[i] == true or close == "reset" or not sleep then
      local r = pack(core_transport.connect(address, port, left, close, sleep))
      for k = 1, r.n do out[#out + 1] = r[k] end
      if r[1] == true then return true, address end
    else
      local s = cosocket(address, port, left)
      if s == true then return true, address end
      out[#out + 1], out[#out + 2] = s, address
    end
  end
  return unpack(out)
end

--- Streams ---------------------------------------------------------------

-- The time left before deadline, for settimeout; nil once it has passed.
local function left_ms(deadline)
  local left = deadline - now()
  if left <= 0 then return nil end
  return max(1, ceil(left))
end

local Cosocket = stream.class {
  _read = function(self)
    local ms = left_ms(self.deadline)
    if not ms then return nil, "ETIMEDOUT" end
    local sock = self.sock
    sock:settimeout(ms)
    local data, err = sock:receiveany(8192)
    if data then return data end
    if err == "closed" then return "" end
    return nil, code_of(err)
  end,
  _write = function(self, data)
    local ms = left_ms(self.deadline)
    if not ms then return nil, "ETIMEDOUT" end
    local sock = self.sock
    sock:settimeout(ms)
    local ok, err = sock:send(data)
    if ok then return true end
    return nil, code_of(err)
  end,
  -- (a cosocket has no SO_LINGER: a stream that must reset is the core's)
  _close = function(self) self.sock:close() end,
}

-- Whether each address resolve() gave is one of this machine's.
local is_local = {}

--- resolve(host): the address literals to try, or nil, code.
function M.resolve(host)
  local r = pack(local_addresses(host))
  if r[1] == nil then return nil, r[2] end
  local list = {}
  for i = 1, r.n, 2 do
    is_local[r[i + 1]] = r[i] == true
    list[#list + 1] = r[i + 1]
  end
  return list
end

--- open(address, port, unix, deadline, sleep): a stream (see probe.lua).
-- Without a sleep (init, init_worker) the core's stream blocks for at
-- most the time left, as those phases allow.
function M.open(address, port, unix, deadline, sleep)
  if not sleep or (not unix and (is_local[address] ~= false)) then
    return core_transport.open(address, port, unix, deadline, sleep)
  end
  local ms = left_ms(deadline)
  if not ms then return nil, "ETIMEDOUT" end
  local sock = ngx.socket.tcp()
  sock:settimeout(ms)
  local ok, err
  if unix then
    ok, err = sock:connect("unix:" .. unix)
  else
    ok, err = connect_to(sock, address, port)
  end
  if not ok then
    if err == "connection refused" then return nil, false end
    return nil, code_of(err)
  end
  return stream.new(Cosocket, { sock = sock, deadline = deadline })
end

M.now = now
M.bind = core_transport.bind
M.listen = core_transport.listen
M.ipv6 = core.ipv6

return M
