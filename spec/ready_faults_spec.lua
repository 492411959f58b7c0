-- Readiness probes against servers that misbehave (spec/fault_server.lua,
-- a child process on real loopback sockets): replies cut short, a byte at
-- a time, far too long, never coming, a reset, another protocol. Each
-- answer is an error or false within the attempt budget, never a hang,
-- and no descriptor is left behind. Also: Unix-domain sockets, your own
-- exchange, a yielding wait that never blocks, and a probe that would
-- connect to itself.
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"
local S = require "servers"

local pack = require("tcp_port_used.pack").pack

-- check's values and how long it took, in ms.
local function timed(o)
  local t0 = core.now()
  local r = pack(tpu.check(o))
  return r, core.now() - t0
end

describe("readiness against servers that misbehave", function()
  local fault = S.fault_server()
  local port = fault.port
  teardown(fault.stop)
  local fds
  setup(function()
    assert(port.never, "the fault server did not start")
    -- a wait that times out explains itself from the kernel's tables,
    -- through the netlink socket the Lua state keeps: open it first
    tpu.check { port = port.never, host = "127.0.0.1", mode = "listen" }
    fds = H.fd_count()
  end)

  local function probe(mode, ready, timeout_ms)
    return timed { port = port[mode], host = "127.0.0.1", ready = ready,
                   timeout_ms = timeout_ms or 2000 }
  end

  it("is an error when the reply is cut short and the server closes", function()
    for _, kind in ipairs { "http", "redis", "postgres" } do
      local r, ms = probe("cut_" .. kind, kind)
      assert.are.equal(nil, r[1], kind)
      assert.are.equal("ECONNRESET", r[3], kind)
      assert.matches("^receive 127%.0%.0%.1:%d+: connection closed by the server$", r[2])
      assert.is_true(ms < 1000, kind .. " took " .. ms .. " ms")
    end
  end)

  it("reads a reply that comes a byte at a time, within the budget", function()
    for _, kind in ipairs { "http", "redis", "postgres" } do
      assert.same({ n = 1, true }, (probe("bytes_" .. kind, kind)), kind)
    end
  end)

  it("times out on a reply a byte at a time that the budget cannot hold", function()
    local r, ms = probe("bytes_http", "http", 60)
    assert.same({ n = 3, nil, "receive 127.0.0.1:" .. port.bytes_http .. ": timed out", "ETIMEDOUT" }, r)
    assert.is_true(ms >= 55 and ms < 500, "took " .. ms .. " ms")
  end)

  it("is EPROTO for a reply far too long, without reading it all", function()
    for _, case in ipairs { { "long_line", "http" }, { "long_line", "redis" },
                            { "long_postgres", "postgres" } } do
      local r, ms = probe(case[1], case[2])
      assert.are.equal(nil, r[1], case[2])
      assert.are.equal("EPROTO", r[3], case[2])
      assert.is_true(ms < 1000, case[2] .. " took " .. ms .. " ms")
    end
    local r = probe("long_line", "http")
    assert.matches("protocol error %(a line longer than 8192 bytes%)$", r[2])
  end)

  it("times out within the attempt budget when the reply never comes", function()
    for _, kind in ipairs { "http", "redis", "postgres" } do
      local r, ms = probe("never", kind, 300)
      assert.same({ nil, "ETIMEDOUT" }, { r[1], r[3] }, kind)
      assert.are.equal("receive 127.0.0.1:" .. port.never .. ": timed out", r[2])
      assert.is_true(ms >= 295 and ms < 800, kind .. " took " .. ms .. " ms")
    end
    local t0 = core.now()
    local r = pack(tpu.wait_until_used { port = port.never, host = "127.0.0.1", ready = "redis",
                                         attempt_ms = 200, timeout_ms = 500 })
    local ms = core.now() - t0
    assert.same({ n = 4, nil, "ETIMEDOUT", "not-ready", "ETIMEDOUT" },
      { n = r.n, r[1], r[3], r[4].state, r[4].probe[3] })
    assert.matches("the redis exchange did not answer ready: receive 127.0.0.1:" .. port.never ..
      ": timed out", r[2], 1, true)
    assert.is_true(ms >= 495 and ms < 1200, "took " .. ms .. " ms")
  end)

  it("names the last answer when the deadline cuts the final probe short", function()
    -- the probe at the deadline gets a millisecond, this server answers
    -- after 50: its timeout does not hide the 503 before it
    local r = pack(tpu.wait_until_used { port = port.http_503, host = "127.0.0.1", ready = "http",
                                         retry_ms = 1000, timeout_ms = 300 })
    assert.same({ nil, "ETIMEDOUT", "not-ready", "status 503" },
      { r[1], r[3], r[4].state, r[4].probe[2] })
    assert.matches("but is not ready: status 503" .. H.NO_TABLES .. "$", r[2])
  end)

  it("is an error when the server resets", function()
    for _, kind in ipairs { "http", "redis", "postgres" } do
      local r = probe("reset", kind)
      assert.are.equal(nil, r[1], kind)
      assert.are.equal("ECONNRESET", r[3], kind)
    end
  end)

  it("is EPROTO for a server that speaks another protocol", function()
    for _, kind in ipairs { "http", "redis", "postgres" } do
      local r = probe("banner", kind)
      assert.are.equal("EPROTO", r[3], kind)
    end
    -- and a wait retries it (the port may be another program's for now)
    local t0 = core.now()
    local r = pack(tpu.wait_until_used { port = port.banner, host = "127.0.0.1", ready = "redis",
                                         timeout_ms = 300 })
    assert.same({ nil, "ETIMEDOUT", "EPROTO" }, { r[1], r[3], r[4].probe[3] })
    assert.is_true(core.now() - t0 >= 295)
    assert.matches('not an HTTP reply: "SSH%-2%.0%-OpenSSH_9%.2"%)$', probe("banner", "http")[2])
  end)

  it("runs your own exchange over the same stream", function()
    local seen
    local r = pack(tpu.check { port = port.banner, host = "127.0.0.1", ready = function(s)
      local line, err, code = s:receive("*l")
      if not line then return nil, err, code end
      seen = line
      return line:find("^SSH%-") ~= nil, line
    end })
    assert.same({ n = 1, true }, r)
    assert.are.equal("SSH-2.0-OpenSSH_9.2", seen)
    local function answer(...)
      local v = pack(...)
      return tpu.check { port = port.banner, host = "127.0.0.1", ready = function()
        return (table.unpack or unpack)(v, 1, v.n)
      end }
    end
    assert.same({ false, "not yet" }, { answer(false, "not yet") })
    assert.same({ nil, "receive 127.0.0.1:" .. port.banner .. ": error EBANNER (bad banner)",
                  "EBANNER" }, { answer(nil, "bad banner", "EBANNER") })
    assert.has_error(function() answer("yes") end,
      "the ready function must return true, false [, reason] or nil, err, code; it returned string yes")
    assert.has_error(function()
      tpu.check { port = port.banner, host = "127.0.0.1", ready = function() error("boom", 0) end }
    end, "boom")
    local r2 = pack(tpu.check { port = port.never, host = "127.0.0.1", timeout_ms = 100,
      ready = function(s)
        assert(s:send("hello\r\n"))
        return s:receive(5)
      end })
    assert.same({ n = 3, nil, "receive 127.0.0.1:" .. port.never .. ": timed out", "ETIMEDOUT" }, r2)
  end)

  it("never blocks a yielding wait: other coroutines run during the exchange", function()
    local ticks, waiting = 0, true
    local results = tpu.run(function()
      local r = pack(tpu.wait_until_used { port = port.never, host = "127.0.0.1", ready = "http",
                                           attempt_ms = 400, timeout_ms = 400 })
      waiting = false
      return r
    end, function()
      while waiting do
        ticks = ticks + 1
        coroutine.yield(10)
      end
    end)
    assert.are.equal("ETIMEDOUT", results[1][1][3])
    -- blocked in the exchange, the ticker would have had a tick or two
    assert.is_true(ticks >= 10, ticks .. " ticks")
  end)

  it("closes as an ordinary client (FIN) even over input it did not read", function()
    -- closing over unread input would send a reset; the server says
    -- which it saw. The exchange reads the first line, then gives the
    -- rest time to arrive, unread.
    for _ = 1, 5 do
      assert.is_true(tpu.check { port = port.tail, host = "127.0.0.1", ready = function(s)
        assert(s:send("PING\r\n"))
        local line = s:receive("*l")
        core.sleep(50)
        return line == "+PONG"
      end })
    end
    local seen
    S.await(5000, function()
      seen = S.log_lines(fault.closes)
      return #seen >= 5
    end)
    assert.same({ "fin", "fin", "fin", "fin", "fin" }, seen)
  end)

  it("left no descriptor behind", function()
    assert.are.equal(fds, H.fd_count(), H.fd_list())
  end)
end)

describe("the readiness verdict over several addresses", function()
  local verdict = require "tcp_port_used.verdict"
  local function ipv6() return true end

  it("prefers a server's 'not ready' to another address's failure or refusal", function()
    assert.same({ false, "status 503" }, { verdict.ready(nil, 80, nil, ipv6, {
      { code = "ETIMEDOUT", op = "receive", address = "127.0.0.1" },
      { refused = true, address = "::1" },
      { answered = true, reason = "status 503" } }) })
  end)

  it("prefers a failure to a refusal, naming the first that failed", function()
    assert.same({ nil, "receive [::1]:80: protocol error (not HTTP)", "EPROTO", "receive" },
      { verdict.ready(nil, 80, nil, ipv6, {
        { refused = true, address = "127.0.0.1" },
        { code = "EPROTO", op = "receive", address = "::1", detail = "not HTTP" } }) })
    assert.same({ false }, { verdict.ready(nil, 80, nil, ipv6, {
      { refused = true, address = "127.0.0.1" }, { refused = true, address = "::1" } }) })
  end)

  it("skips an IPv6 address where this machine has no IPv6", function()
    local function no_ipv6() return false end
    assert.same({ false }, { verdict.ready(nil, 80, nil, no_ipv6, {
      { refused = true, address = "127.0.0.1" },
      { code = "EADDRNOTAVAIL", op = "connect", address = "::1" } }) })
    assert.same({ nil, "connect [::1]:80: no address of a family this machine has",
                  "EAFNOSUPPORT", "connect" }, { verdict.ready("::1", 80, nil, no_ipv6, {
      { code = "EAFNOSUPPORT", op = "connect", address = "::1" } }) })
  end)
end)

describe("unix = PATH", function()
  local unix = require "socket.unix"
  local dir = S.tmpdir("unix")
  teardown(function() H.run("rm -rf " .. dir) end)

  it("is ENOENT where no socket file is, with or without ready", function()
    local path = dir .. "/missing.sock"
    assert.same({ nil, "connect " .. path .. ": no such file or directory", "ENOENT" },
      { tpu.check { unix = path } })
    assert.same({ nil, "connect " .. path .. ": no such file or directory", "ENOENT" },
      { tpu.check { unix = path, ready = "redis" } })
  end)

  it("is false where the socket file has no listener, true where one listens", function()
    local path = dir .. "/stale.sock"
    local u = assert(unix())
    assert(u:bind(path))
    assert.is_false(tpu.check { unix = path })
    assert(u:listen(4))
    assert.is_true(tpu.check { unix = path })
    u:close()
    assert.is_false(tpu.check { unix = path, ready = "http" })
    os.remove(path)
  end)

  it("waits for a socket file that appears later (ENOENT is retried)", function()
    local path = dir .. "/later.sock"
    local pid = H.spawn(H.lua_cmd(string.format(
      "require('socket').sleep(0.3); local u = require('socket.unix')(); assert(u:bind(%q)); " ..
      "assert(u:listen(4)); require('socket').sleep(20)", path)))
    local ok, err = tpu.wait_until_used { unix = path, timeout_ms = 10000 }
    H.kill(pid)
    assert.is_true(ok, err)
  end)

  it("gives up at once on a path too long for a socket address", function()
    local path = dir .. "/" .. ("x"):rep(200)
    local t0 = core.now()
    local r = pack(tpu.wait_until_used { unix = path, timeout_ms = 5000 })
    assert.same({ nil, "ENAMETOOLONG" }, { r[1], r[3] })
    assert.is_true(core.now() - t0 < 1000)
  end)
end)

describe("a readiness probe that would connect to itself", function()
  it("is refused (false), not ready or an error", function()
    if not H.can_unshare() then
      pending("needs unshare -n (a network namespace with one ephemeral port)")
      return
    end
    -- the only ephemeral port is the port probed: nothing listens there,
    -- and TCP's simultaneous open would connect the probe to itself
    local out = H.lua_in_netns([[
      local tpu = require "tcp_port_used"
      print(tpu.check { port = 40000, host = "127.0.0.1", ready = "redis", timeout_ms = 300 })
      print(tpu.check { port = 40000, host = "127.0.0.1", ready = function() return true end })
    ]], "sysctl -qw net.ipv4.ip_local_port_range='40000 40000' && ")
    assert.are.equal("false\nfalse\n", out)
  end)
end)
