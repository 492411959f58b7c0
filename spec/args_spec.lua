local tpu = require "tcp_port_used"

-- Every bad argument raises an error that names the argument and shows the
-- value; none crashes and none is answered as if it were valid.
local function raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "no error for " .. pattern)
  assert.is_string(err)
  assert.matches(pattern, err, 1, true)
end

describe("bad arguments", function()
  local nan = 0 / 0
  local bad_ports = {
    { 0, "got 0" }, { -1, "got -1" }, { 65536, "got 65536" }, { 80.5, "got 80.5" },
    { "80", 'got "80"' }, { nil, "got nil" }, { nan, "got nan" }, { math.huge, "got inf" },
    { true, "got true" },
  }

  it("reject every bad port in check and in each wait", function()
    for _, case in ipairs(bad_ports) do
      local v, shown = case[1], case[2]
      raises("bad argument #1 to 'check' (port must be an integer in 1..65535, " .. shown, tpu.check, v)
      raises("bad argument #1 to 'check' (port must be an integer in 1..65535, " .. shown,
        tpu.check, { port = v })
      for _, f in ipairs { "wait_until_used", "wait_until_free", "wait_until_used_on_host",
                           "wait_until_free_on_host", "wait_for_status" } do
        raises("bad argument #1 to '" .. f .. "' (port must be an integer in 1..65535, " .. shown,
          tpu[f], v, "127.0.0.1", true)
      end
    end
  end)

  it("reject a host that is not a string, or holds a NUL", function()
    raises("bad argument #2 to 'check' (host must be a string or nil, got 1)", tpu.check, 80, 1)
    raises("bad argument #2 to 'check' (host must not contain a NUL byte, got \"a\\0b\")",
      tpu.check, 80, "a\0b")
    raises("bad argument #2 to 'check' (host must be 1 to 1024 bytes long", tpu.check, 80, "")
    raises("bad argument #2 to 'check' (host must be 1 to 1024 bytes long",
      tpu.check, 80, ("x"):rep(2000))
    raises("bad argument #1 to 'check' (host must be a string or nil, got table)",
      tpu.check, { port = 80, host = {} })
    raises("bad argument #2 to 'wait_until_used_on_host' (host must be a string or nil, got false)",
      tpu.wait_until_used_on_host, 80, false)
  end)

  it("reject an in_use that is not a boolean", function()
    raises("bad argument #3 to 'wait_for_status' (in_use must be a boolean, got nil)",
      tpu.wait_for_status, 80, "127.0.0.1")
    raises("bad argument #3 to 'wait_for_status' (in_use must be a boolean, got 1)",
      tpu.wait_for_status, 80, "127.0.0.1", 1)
    raises("bad argument #1 to 'wait_for_status' (in_use must be a boolean, got \"yes\")",
      tpu.wait_for_status, { port = 80, in_use = "yes" })
    raises("bad argument #1 to 'wait_until_used' (in_use must be true or nil here, got false)",
      tpu.wait_until_used, { port = 80, in_use = false })
  end)

  it("reject negative, NaN, infinite and non-number times", function()
    for _, v in ipairs { -1, nan, math.huge, "100" } do
      raises("bad argument #2 to 'wait_until_used' (retry_ms must be a number of milliseconds in 0..1e12",
        tpu.wait_until_used, 80, v)
      raises("bad argument #3 to 'wait_until_used' (timeout_ms must be a number of milliseconds in 0..1e12",
        tpu.wait_until_used, 80, 10, v)
      raises("bad argument #4 to 'wait_until_free_on_host' (timeout_ms must be",
        tpu.wait_until_free_on_host, 80, nil, 10, v)
      raises("bad argument #1 to 'check' (timeout_ms must be", tpu.check, { port = 80, timeout_ms = v })
      raises("bad argument #1 to 'wait_until_used' (attempt_ms must be",
        tpu.wait_until_used, { port = 80, attempt_ms = v })
    end
  end)

  -- check skips the checks of a port and a host equal to the last valid
  -- ones (args.lua): a value of another type or a near miss is still checked
  it("reject a bad port or host right after a valid one that looks the same", function()
    local r = require("helpers").reserve("127.0.0.1")
    local p = r.port
    -- (listen mode answers nil, ENOTSUP on the portable build: no error either)
    local function valid(a, b)
      assert.has_no.errors(function() tpu.check(a, b) end)
    end
    for _, mode in ipairs { "connect", "bind", "listen" } do
      valid { port = p, host = "127.0.0.1", mode = mode }
      raises("bad argument #1 to 'check' (port must be an integer in 1..65535, got \"" .. p .. "\")", tpu.check,
        { port = tostring(p), host = "127.0.0.1", mode = mode })
      valid { port = p, host = "127.0.0.1", mode = mode }
      raises("bad argument #1 to 'check' (port must be an integer in 1..65535, got " .. p + 0.5 .. ")", tpu.check,
        { port = p + 0.5, host = "127.0.0.1", mode = mode })
      valid { port = p, host = "127.0.0.1", mode = mode }
      raises("bad argument #1 to 'check' (host must not contain a NUL byte", tpu.check,
        { port = p, host = "127.0.0.1\0", mode = mode })
      valid(p, "127.0.0.1")
      raises("bad argument #2 to 'check' (host must be a string or nil, got table)", tpu.check, p, {})
      for _ = 1, 3 do
        raises("bad argument #1 to 'check' (unknown option 'prot')", tpu.check,
          { port = p, host = "127.0.0.1", mode = mode, prot = "tcp" })
        valid { port = p, host = "127.0.0.1", mode = mode }
      end
    end
    r.close()
  end)

  it("reject an unknown mode or close, and unknown options", function()
    raises("bad argument #1 to 'check' (mode must be one of connect, bind, any", tpu.check,
      { port = 80, mode = "ping" })
    raises("bad argument #1 to 'check' (close must be one of auto, graceful, reset, got \"fin\")",
      tpu.check, { port = 80, close = "fin" })
    raises("bad argument #1 to 'wait_until_used' (unknown option 'timeOutMs' (did you mean 'timeout_ms'?))",
      tpu.wait_until_used, { port = 80, timeOutMs = 10 })
    raises("bad argument #1 to 'check' (unknown option 'prot')", tpu.check, { prot = 80 })
  end)

  it("reject a proto other than tcp and udp, naming it, in every function that takes one", function()
    local want = "proto must be one of tcp, udp, got \"sctp\")"
    raises("bad argument #1 to 'check' (" .. want, tpu.check, { port = 80, proto = "sctp" })
    raises("bad argument #1 to 'wait_until_used' (" .. want, tpu.wait_until_used, { port = 80, proto = "sctp" })
    raises("bad argument #1 to 'wait_for_status' (proto must be one of tcp, udp, got 17)",
      tpu.wait_for_status, { port = 80, in_use = true, proto = 17 })
    raises("bad argument #3 to 'check_many' (" .. want, tpu.check_many, { 80 }, nil, { proto = "sctp" })
    raises("bad argument #1 to 'find_free' (" .. want, tpu.find_free, { proto = "sctp" })
    raises("bad argument #1 to 'owner' (" .. want, tpu.owner, { port = 80, proto = "sctp" })
    raises("bad argument #1 to 'check' (proto must be one of tcp, udp, got \"UDP\")", tpu.check,
      { port = 80, proto = "UDP" })
  end)

  it("reject modes connect and any with UDP, saying why", function()
    local why = "mode must be bind or listen with proto udp (a connect probe has no handshake " ..
      "to observe over UDP, and its datagram would reach the server), got "
    raises("bad argument #1 to 'check' (" .. why .. "\"connect\")", tpu.check,
      { port = 80, proto = "udp", mode = "connect" })
    raises("bad argument #1 to 'check' (" .. why .. "\"any\")", tpu.check,
      { port = 80, proto = "udp", mode = "any" })
    raises("bad argument #1 to 'wait_until_free' (" .. why .. "\"connect\")", tpu.wait_until_free,
      { port = 80, proto = "udp", mode = "connect" })
    raises("bad argument #3 to 'check_many' (" .. why .. "\"connect\")", tpu.check_many,
      { 80 }, nil, { proto = "udp", mode = "connect" })
    raises("bad argument #1 to 'check' (mode must be one of connect, bind, any, listen, got \"ping\")",
      tpu.check, { port = 80, proto = "udp", mode = "ping" })
  end)

  it("reject bad arguments to owner in either form", function()
    raises("bad argument #1 to 'owner' (port must be an integer in 1..65535, got 0)", tpu.owner,
      { port = 0, proto = "udp" })
    raises("bad argument #1 to 'owner' (host must be a string or nil, got 5)", tpu.owner,
      { port = 80, host = 5 })
    raises("bad argument #1 to 'owner' (unknown option 'mode')", tpu.owner, { port = 80, mode = "bind" })
    raises("bad argument #2 to 'owner' (host must be a string or nil, got 5)", tpu.owner, 80, 5)
  end)

  it("reject bad ports lists, callbacks and flags", function()
    raises("bad argument #1 to 'wait_until_used' (ports must be a non-empty list of ports, got table)",
      tpu.wait_until_used, { ports = {} })
    raises("bad argument #1 to 'wait_until_used' (ports[2] must be an integer in 1..65535, got 0)",
      tpu.wait_until_used, { ports = { 80, 0 } })
    raises("bad argument #1 to 'wait_until_used' (give port or ports, not both)",
      tpu.wait_until_used, { port = 80, ports = { 81 } })
    raises("bad argument #1 to 'wait_until_used' (sleep must be a function or nil, got 5)",
      tpu.wait_until_used, { port = 80, sleep = 5 })
    raises("bad argument #1 to 'wait_until_used' (on_retry must be a function or nil, got \"x\")",
      tpu.wait_until_used, { port = 80, on_retry = "x" })
    raises("bad argument #1 to 'wait_until_used' (yield must be a boolean, got 0)",
      tpu.wait_until_used, { port = 80, yield = 0 })
  end)

  it("reject bad readiness options, naming the option", function()
    for _, f in ipairs { "check", "wait_until_used", "wait_for_status" } do
      local function call(o)
        o.in_use = f == "wait_for_status" or nil
        return tpu[f](o)
      end
      local function bad(what, o) raises("bad argument #1 to '" .. f .. "' (" .. what, call, o) end
      bad('ready must be one of http, redis, postgres or a function, got "mysql")',
        { port = 80, ready = "mysql" })
      bad("ready must be one of http, redis, postgres or a function, got true)",
        { port = 80, ready = true })
      local PATH_RULE = 'path must start with "/" and hold no spaces, control characters or "#" ' ..
        "(a fragment is never sent), got "
      bad(PATH_RULE .. '"healthz")',
        { port = 80, ready = "http", path = "healthz" })
      bad(PATH_RULE .. '"/a b")',
        { port = 80, ready = "http", path = "/a b" })
      bad(PATH_RULE .. '"/a\\nX:")',
        { port = 80, ready = "http", path = "/a\nX:" })
      bad("path must be a string of 1 to 8192 bytes without NUL, got 5)",
        { port = 80, ready = "http", path = 5 })
      bad('status must be an HTTP status in 100..599, a list of them, or a class such as "2xx", got "ok")',
        { port = 80, ready = "http", status = "ok" })
      bad("status must be an HTTP status in 100..599, a list of them, or a class such as \"2xx\", got 600)",
        { port = 80, ready = "http", status = 600 })
      bad("status must be an HTTP status in 100..599, a list of them, or a class such as \"2xx\", got table)",
        { port = 80, ready = "http", status = {} })
      bad("status[2] must be an HTTP status in 100..599, got \"204\")",
        { port = 80, ready = "http", status = { 200, "204" } })
      bad('path needs ready = "http", got "/x")', { port = 80, path = "/x" })
      bad('status needs ready = "http", got 200)', { port = 80, ready = "redis", status = 200 })
      bad('user needs ready = "postgres", got "app")', { port = 80, ready = "http", user = "app" })
      bad("user must be a string of 1 to 1024 bytes without NUL, got \"a\\0b\")",
        { port = 80, ready = "postgres", user = "a\0b" })
      bad("database must be a string of 1 to 1024 bytes without NUL, got \"\")",
        { port = 80, ready = "postgres", database = "" })
      bad('unix excludes port and ports: give one of them, got "/run/x.sock")',
        { port = 80, unix = "/run/x.sock" })
      bad('unix excludes host: give one of them, got "/run/x.sock")',
        { host = "db", unix = "/run/x.sock" })
      bad("unix must be a string of 1 to 1024 bytes without NUL, got 1)", { unix = 1 })
      bad('mode must be "connect" with ready, got "listen")',
        { port = 80, ready = "redis", mode = "listen" })
      bad('mode must be "connect" with unix, got "bind")', { unix = "/x.sock", mode = "bind" })
      bad('proto must be "tcp" with ready, got "udp")', { port = 80, ready = "redis", proto = "udp" })
      bad('proto must be "tcp" with unix, got "udp")', { unix = "/x.sock", proto = "udp" })
    end
    raises("bad argument #1 to 'wait_until_used' (unix excludes port and ports",
      tpu.wait_until_used, { ports = { 80 }, unix = "/x.sock" })
    -- raised at the caller, as every argument error
    local ok, err, _ = pcall(function() tpu.check { port = 80, ready = "mysql" } end)
    assert.is_false(ok)
    assert.matches("^spec/args_spec%.lua:%d+: bad argument #1 to 'check'", err)
    _, err = pcall(function() tpu.check { port = 80, ready = "http", status = { 1 } } end)
    assert.matches("^spec/args_spec%.lua:%d+: bad argument #1 to 'check' %(status%[1%]", err)
    _, err = pcall(function() tpu.wait_until_used { port = 80, ready = "http", path = "/", user = "" } end)
    assert.matches("^spec/args_spec%.lua:%d+: bad argument #1 to 'wait_until_used' %(user needs", err)
  end)

  it("are checked by the C core too, for callers that bypass the Lua layer", function()
    local core = require "tcp_port_used.core"
    raises("port must be an integer in 1..65535", core.connect, nil, 0)
    raises("port must be an integer in 1..65535", core.bind, nil, 80.5)
    raises("host must not contain a NUL byte", core.connect, "a\0b", 80)
    raises("milliseconds must be a number in 0..1e12", core.connect, nil, 80, -1)
    raises("milliseconds must be a number in 0..1e12", core.sleep, 0 / 0)
    raises("invalid option 'x'", core.connect, nil, 80, 10, "x")
    raises("an IPv4 or IPv6 address literal expected", core.stream, "localhost", 80)
    raises("an IPv4 or IPv6 address literal expected", core.stream, ("1"):rep(100), 80)
    raises("port must be an integer in 1..65535", core.stream, "127.0.0.1", 0)
    raises("path must not contain a NUL byte", core.stream_unix, "/a\0b")
    -- counts are checked, then clamped, before the cast to int
    for _, bad in ipairs { 0, 0.5, -1, 0 / 0 } do
      raises("max_inflight must be an integer >= 1", core.many, nil, { 1 }, 10, nil, bad)
    end
    assert.is_table(core.many("127.0.0.1", { 1 }, 10, nil, 2 ^ 53))
    raises("argv must be a list of 1 to 65535 strings", require "tcp_port_used.exec", {})
    local s = core.stream_unix("/nonexistent/x.sock")
    raises("invalid option 'fin'", s.close, s, "fin")
    assert.same({ nil, "ECLOSED" }, { s:recv() })
    assert.same({ nil, "ECLOSED" }, { s:send("x") })
  end)

  it("agree on the version: the C core and the pure-Lua code", function()
    local core = require "tcp_port_used.core"
    assert.are.equal(core._VERSION, require "tcp_port_used.version")
  end)
end)
