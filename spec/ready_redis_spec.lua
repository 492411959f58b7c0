-- ready = "redis" against Debian's redis-server, started on loopback ports
-- picked at run time: ready; ready behind requirepass; really loading a
-- saved data set (Redis 7's key-load-delay) while a plain connect says
-- true; and nothing in its log from the probes.
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"
local S = require "servers"

local function check(port, extra)
  local o = { port = port, host = "127.0.0.1", ready = "redis" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return tpu.check(o)
end

describe("ready = \"redis\" against a real redis-server", function()
  local r, why = S.redis_start()
  if not r then
    pending(why)
    return
  end
  teardown(function() S.redis_stop(r) end)

  it("is ready, here and with the host omitted (both loopbacks)", function()
    assert.same({ true }, { check(r.port) })
    assert.same({ true }, { tpu.check { port = r.port, ready = "redis" } })
  end)

  it("adds no line to the log for 200 probes; an HTTP probe does (the control)", function()
    local base = #S.log_lines(r.log)
    for _ = 1, 200 do assert.is_true(check(r.port)) end
    assert.is_true(tpu.wait_until_used { port = r.port, host = "127.0.0.1", ready = "redis" })
    -- Redis takes an HTTP request for an attack, says so in its log, and
    -- closes: the line shows that the log would tell
    local ok, _, code = check(r.port, { ready = "http" })
    assert.is_nil(ok)
    assert.are.equal("ECONNRESET", code)
    assert.is_true(S.await(5000, function() return #S.log_lines(r.log) > base end))
    local new = S.lines_after(r.log, base)
    assert.are.equal(1, #new)
    assert.matches("SECURITY ATTACK", new[1], 1, true)
  end)

  it("leaves no descriptor behind", function()
    local before = H.fd_count()
    for _ = 1, 50 do check(r.port) end
    assert.are.equal(before, H.fd_count())
  end)
end)

describe("ready = \"redis\" against a redis-server with requirepass", function()
  local r, why = S.redis_start("--requirepass secret")
  if not r then
    pending(why)
    return
  end
  teardown(function() S.redis_stop(r) end)

  it("is ready: -NOAUTH is an answer from a server that is up", function()
    assert.are.equal("-NOAUTH Authentication required.", S.redis_command(r.port, "PING"))
    assert.same({ true }, { check(r.port) })
  end)
end)

describe("ready = \"redis\" against a redis-server loading its data set", function()
  -- A data set saved by a first server, reloaded by a second that takes
  -- 1 ms per key (key-load-delay) and serves clients while it loads
  -- (every 1 KiB read with loading-process-events-interval-bytes).
  local KEYS = 2500
  local first, why = S.redis_start()
  if not first then
    pending(why)
    return
  end
  local value = ("v"):rep(100)
  local socket = require "socket"
  local c = assert(socket.connect("127.0.0.1", first.port))
  local batch = {}
  for i = 1, KEYS do batch[#batch + 1] = "SET key:" .. i .. " " .. value .. "\r\n" end
  assert(c:send(table.concat(batch)))
  for _ = 1, KEYS do assert.are.equal("+OK", c:receive("*l")) end
  c:close()
  assert.are.equal("+OK", S.redis_command(first.port, "SAVE"))
  S.redis_stop(first, true)
  local r
  r, why = S.redis_start("--key-load-delay 1000 --loading-process-events-interval-bytes 1024",
    first.dir, false)
  if not r then
    H.run("rm -rf " .. first.dir)
    pending(why)
    return
  end
  teardown(function() S.redis_stop(r) end)

  it("is not ready (loading) while a plain connect says true, and a wait sees the end", function()
    local ok, reason = check(r.port)
    assert.is_false(ok, "the server was done loading before the first probe")
    assert.are.equal("loading", reason)
    assert.is_true(tpu.check { port = r.port, host = "127.0.0.1" })
    local t0, seen = core.now(), {}
    local done, err = tpu.wait_until_used { port = r.port, host = "127.0.0.1", ready = "redis",
      timeout_ms = 60000, on_retry = function(info) seen[info.err or "none"] = true end }
    assert.is_true(done, err)
    assert.is_true(seen.loading)
    assert.is_true(S.logged(r.log, "DB loaded from disk"))
    assert.is_true(core.now() - t0 > 100, "the wait ended at once")
    assert.are.equal(tostring(KEYS), S.redis_command(r.port, "DBSIZE"):match("^:(%d+)"))
  end)
end)
