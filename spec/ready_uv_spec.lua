-- Readiness through tcp_port_used.uv on plain luv: the same exchanges over
-- luv TCP handles and pipes (read_start), never blocking the loop, with
-- and without the C core, against a real redis-server (TCP and its Unix
-- socket), a real nginx (spec/nginx/ready.conf), and servers that
-- misbehave (spec/fault_server.lua). Each answer is the core's.
local H = require "helpers"
local S = require "servers"

local has_luv = pcall(require, "tcp_port_used.uv")

local pack = require("tcp_port_used.pack").pack

describe("readiness through tcp_port_used.uv on luv", function()
  if not has_luv then
    pending("luv is not installed for this runtime")
    return
  end
  local uv = require "luv"
  local ad = require "tcp_port_used.uv"
  local tpu = require "tcp_port_used"
  local redis, n = S.redis_and_nginx()
  if not redis then
    pending(n)
    return
  end
  local fault = S.fault_server()
  teardown(function()
    fault.stop()
    S.nginx_stop(n)
    S.redis_stop(redis)
  end)
  after_each(function() uv.run("nowait") end)

  it("answers as the core does, over TCP handles and pipes", function()
    local sock = redis.dir .. "/redis.sock"
    local cases = {
      { port = redis.port, host = "127.0.0.1", ready = "redis" },
      { port = redis.port, ready = "redis" },
      { port = redis.port, host = "localhost", ready = "redis" },
      { port = redis.port, host = "127.0.0.1", ready = "http" },
      { port = n.port, host = "127.0.0.1", ready = "http", path = "/healthz" },
      { port = n.port, host = "127.0.0.1", ready = "http", path = "/no-content", status = { 200 } },
      { port = n.port, host = "127.0.0.1", ready = "redis" },
      { port = n.port, host = "127.0.0.1", ready = "postgres" },
      { unix = sock, ready = "redis" },
      { unix = sock },
      { unix = redis.dir .. "/missing.sock", ready = "redis" },
      { port = fault.port.cut_postgres, host = "127.0.0.1", ready = "postgres" },
      { port = fault.port.bytes_postgres, host = "127.0.0.1", ready = "postgres" },
      { port = fault.port.long_line, host = "127.0.0.1", ready = "http" },
      { port = fault.port.reset, host = "127.0.0.1", ready = "redis" },
      { port = fault.port.never, host = "127.0.0.1", ready = "http", timeout_ms = 200 },
    }
    for i, o in ipairs(cases) do
      assert.same(pack(tpu.check(o)), pack(ad.check(o)), "case " .. i)
    end
    assert.same({ n = 2, false, "status 503" }, pack(ad.check(cases[5])))
  end)

  it("never blocks the loop during an exchange", function()
    local ticks = 0
    local t = uv.new_timer()
    t:start(5, 5, function() ticks = ticks + 1 end)
    local got
    ad.on_used({ port = fault.port.never, host = "127.0.0.1", ready = "redis", attempt_ms = 300,
                 timeout_ms = 300 }, function(...) got = pack(...) end)
    while not got do uv.run("once") end
    t:close()
    assert.same({ n = 4, nil, "ETIMEDOUT", "not-ready", "ETIMEDOUT" },
      { n = got.n, got[1], got[3], got[4].state, got[4].probe[3] })
    assert.matches("receive 127.0.0.1:" .. fault.port.never .. ": timed out", got[2], 1, true)
    -- 60 ticks in 300 ms on an idle machine; a loop blocked for the
    -- exchange would tick once (libuv does not catch missed ticks up)
    assert.is_true(ticks >= 10, ticks .. " ticks")
  end)

  it("waits in a coroutine until the health route turns 200", function()
    os.remove(n.prefix .. "/up")
    local got
    coroutine.wrap(function()
      got = pack(ad.wait_until_used { port = n.port, host = "127.0.0.1", ready = "http",
                                      path = "/healthz", timeout_ms = 20000 })
    end)()
    local t = uv.new_timer()
    t:start(300, 0, function()
      t:close()
      S.write(n.prefix .. "/up", "")
    end)
    while not got do uv.run("once") end
    assert.same({ n = 1, true }, got)
  end)

  it("leaves no descriptor behind", function()
    local before = H.fd_count()
    for _ = 1, 20 do
      ad.check { port = redis.port, host = "127.0.0.1", ready = "redis" }
      ad.check { unix = redis.dir .. "/redis.sock", ready = "redis" }
      ad.check { port = fault.port.long_line, host = "127.0.0.1", ready = "http" }
    end
    uv.run("nowait")
    assert.are.equal(before, H.fd_count())
  end)

  it("works where the C core was never built", function()
    local out, rc = H.run(H.lua_cmd(string.format([[
      package.preload["tcp_port_used.core"] = function() error("not built here") end
      local ad = require "tcp_port_used.uv"
      print("core", ad.has_core)
      print("tcp", ad.check { port = %d, host = "127.0.0.1", ready = "redis" })
      print("pipe", ad.check { unix = %q, ready = "redis" })
      print("http", ad.check { port = %d, host = "127.0.0.1", ready = "http", path = "/teapot" })
    ]], redis.port, redis.dir .. "/redis.sock", n.port)) .. " 2>&1")
    assert.equals(0, rc, out)
    assert.equals("core\tfalse\ntcp\ttrue\npipe\ttrue\nhttp\tfalse\tstatus 418\n", out)
  end)
end)
