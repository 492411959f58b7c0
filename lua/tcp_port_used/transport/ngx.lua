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
-- luacheck: read globals ngx
local core = require "tcp_port_used.core"
local core_transport = require "tcp_port_used.transport.core"

local M = {}

local max, ceil, select = math.max, math.ceil, select
local unpack = table.unpack or unpack -- luacheck: ignore 143
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
}

-- One cosocket connect: true, false (refused) or a code.
local function cosocket(address, port, budget)
  local sock = ngx.socket.tcp()
  sock:settimeout(max(1, ceil(budget)))
  local ok, err = sock:connect(address:find(":", 1, true) and "[" .. address .. "]" or address, port)
  if ok then
    -- an ordinary close (FIN): the server logs nothing
    sock:close()
    return true
  end
  local code = CODES[err]
  if code == nil then return "EUNKNOWN" end
  return code
end

local function pack(...)
  return { n = select("#", ...), ... }
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

M.bind = core_transport.bind
M.listen = core_transport.listen
M.ipv6 = core.ipv6

return M
