--- The self-connect fault, staged for spec/self_connect_spec.lua in the
-- network namespace the spec makes for it (this code runs there, as root
-- of the namespace): the ephemeral range is narrowed to two ports P and
-- P+1, and the kernel then picks P first as the source port of a connect
-- to P, so that TCP's simultaneous open connects the probe to itself.
local H = require "helpers"
local C = require "calls"
local T = require "transports"
local socket = require "socket"

local S = {}

local RANGE = "/proc/sys/net/ipv4/ip_local_port_range"

local read = H.slurp

-- TIME_WAIT entries whose local port is port (a self-connect closed
-- gracefully leaves one from the port to itself).
local function time_wait_from(port)
  local n = 0
  for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    for line in read(f):gmatch("[^\n]+") do
      local lport, st = line:match("^%s*%d+: %x+:(%x+) %x+:%x+ (%x%x)")
      if lport and tonumber(lport, 16) == port and st == "06" then n = n + 1 end
    end
  end
  return n
end

--- The calls that probe port p in the namespace: every host form and the
-- connecting modes, n times each, and a wait per host that must time out;
-- for kind "check_many", the core's check_many instead.
function S.calls(kind, p, n)
  local calls = {}
  local hosts = { false, "127.0.0.1", "::1", "localhost" }
  for _, h in ipairs(hosts) do
    for _, m in ipairs { "connect", "any" } do
      local label = string.format("host=%s mode=%s", h and h or "omitted", m)
      for _ = 1, n do
        if kind == "check_many" then
          calls[#calls + 1] = { fn = "check_many", args = { { p }, h or nil, { mode = m } }, n = 3,
                                pick = p, label = "check_many " .. label }
        else
          calls[#calls + 1] = { fn = "check", args = { { port = p, host = h or nil, mode = m } }, n = 1,
                                label = "check " .. label }
        end
      end
    end
    if kind ~= "check_many" then
      calls[#calls + 1] = { fn = "wait_until_used", n = 1, label = "wait_until_used host=" .. tostring(h),
        args = { { port = p, host = h or nil, timeout_ms = 150, retry_ms = 5 } } }
    end
  end
  return calls
end

--- Runs the whole stage for kind (one of T.KINDS, or "check_many": the
-- core module's check_many) and prints what it saw as a literal.
function S.run(kind, n)
  local res = {}
  -- a port for the runner's own use first (nginx listens on one), then P
  local r, why = T.open(kind == "check_many" and "core" or kind)
  if not r then
    io.write("\n--stage--\n", C.literal { missing = why }, "\n")
    return
  end
  -- P and P+1 are neither nginx's port nor the source port of the
  -- requests to it (a connection from P would make a bind probe of P
  -- answer, rightly, that P is in use)
  local taken = {}
  if r.nginx then
    r.nginx.source_port = H.free_port("127.0.0.1")
    taken[r.nginx.port], taken[r.nginx.source_port] = true, true
  end
  local p
  repeat p = H.free_port("127.0.0.1") until p < 65535 and not taken[p] and not taken[p + 1]
  res.port = p
  local ok, err = pcall(function()
    -- (sysctl is not ours to leak-check: the asan run's preload stays off)
    assert(os.execute(string.format("unset LD_PRELOAD; sysctl -qw net.ipv4.ip_local_port_range='%d %d'",
      p, p + 1)))
    res.range = read(RANGE):gsub("%s+", " "):gsub(" $", "")
    res.calls = S.calls(kind, p, n)
    res.outcomes = r:run(res.calls)
  end)
  r:close()
  if not ok then res.failure = tostring(err) end
  res.time_wait = time_wait_from(p)
  -- a server can take the port at once, on both loopbacks
  for _, host in ipairs { "127.0.0.1", "::1" } do
    local s, e = socket.bind(host, p)
    res["listen " .. host] = s and "ok" or tostring(e)
    if s then s:close() end
  end
  -- and the fault is live here: a plain connect loop, which does not look
  -- at its own address, does reach itself
  res.tries, res.self = n, 0
  for _ = 1, n do
    local c = socket.tcp()
    c:settimeout(1)
    if c:connect("127.0.0.1", p) then
      local _, lport = c:getsockname()
      if tonumber(lport) == p then res.self = res.self + 1 end
    end
    c:close()
  end
  io.write("\n--stage--\n", C.literal(res), "\n")
end

--- The literal S.run printed in out, or nil.
function S.parse(out)
  local _, e = out:find("\n--stage--\n", 1, true)
  return e and C.load(out:sub(e + 1))
end

return S
