-- make demo: a listener that appears after a moment, and waits that see it.
-- Everything happens on 127.0.0.1, on a port the kernel picks.
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local socket = require "socket"

local function ms_since(t0) return string.format("%.1f ms", core.now() - t0) end

-- a port nobody uses: bind port 0, read it back, let it go
local probe = assert(socket.bind("127.0.0.1", 0))
local _, port = probe:getsockname()
port = tonumber(port)
probe:close()

print(("tcp_port_used %s on %s"):format(tpu._VERSION, jit and jit.version or _VERSION))
print(("check(%d)                 -> %s"):format(port, tostring(tpu.check(port))))

local t0 = core.now()
local ok, err = tpu.wait_until_used(port, 100, 300)
print(("wait_until_used(%d, 100, 300) -> %s, %s after %s"):format(port, tostring(ok), tostring(err),
  ms_since(t0)))

-- Two tasks in one thread: one opens the listener after 200 ms, the other
-- waits for it with the default growing interval.
local server
t0 = core.now()
local results = tpu.run(
  function()
    coroutine.yield(200) -- the yield protocol: "resume me in 200 ms"
    server = assert(socket.bind("127.0.0.1", port))
    return ms_since(t0)
  end,
  function()
    local r = { tpu.wait_until_used { port = port, timeout_ms = 5000 } }
    return r[1], ms_since(t0)
  end)
print(("listener opened after       %s"):format(results[1][1]))
print(("wait_until_used saw it after %s -> %s"):format(results[2][2], tostring(results[2][1])))
print(("check(%d)                 -> %s"):format(port, tostring(tpu.check(port))))

t0 = core.now()
local results2 = tpu.run(
  function() coroutine.yield(150); server:close(); return ms_since(t0) end,
  function() return tpu.wait_until_free(port, 25, 5000), ms_since(t0) end)
print(("listener closed after       %s"):format(results2[1][1]))
print(("wait_until_free saw it after %s -> %s"):format(results2[2][2], tostring(results2[2][1])))
