-- ready = "http" against a real nginx (spec/nginx/ready.conf) on a port
-- picked at run time: a health location that says 503 until a file
-- appears, statuses by number, list and class, a 404, what the probe
-- sends, what nginx logs, and other protocols' exchanges against it.
local tpu = require "tcp_port_used"
local H = require "helpers"
local S = require "servers"

local pack = require("tcp_port_used.pack").pack

describe("ready = \"http\" against a real nginx", function()
  local n, why = S.nginx_start(S.slurp(H.root .. "/spec/nginx/ready.conf"))
  if not n then
    pending(why)
    return
  end
  teardown(function() S.nginx_stop(n) end)
  local up, access = n.prefix .. "/up", n.prefix .. "/logs/access.log"

  local function check(path, status, host)
    return tpu.check { port = n.port, host = host or "127.0.0.1", ready = "http", path = path,
                       status = status }
  end

  before_each(function() os.remove(up) end)

  it("is not ready (status 503) until the health file appears, while connect says true", function()
    assert.same({ false, "status 503" }, { check("/healthz") })
    assert.is_true(tpu.check { port = n.port, host = "127.0.0.1" })
    S.write(up, "")
    assert.same({ true }, { check("/healthz") })
  end)

  it("lets a wait see the health route turn 200", function()
    local reasons = {}
    H.spawn("sleep 0.3; touch " .. up)
    local r = pack(tpu.wait_until_used { port = n.port, host = "127.0.0.1", ready = "http",
      path = "/healthz", timeout_ms = 20000,
      on_retry = function(info) reasons[#reasons + 1] = info.err end })
    assert.same({ n = 1, true }, r)
    assert.are.equal("status 503", reasons[1])
  end)

  it("gives up at the deadline with the last answer", function()
    local ok, err, code, e = tpu.wait_until_used { port = n.port, host = "127.0.0.1",
      ready = "http", path = "/healthz", timeout_ms = 200 }
    assert.same({ nil, "ETIMEDOUT", "not-ready" }, { ok, code, e.state })
    assert.matches("but is not ready: status 503" .. H.NO_TABLES .. "$", err)
  end)

  it("takes statuses as a number, a list or a class; 200..399 by default", function()
    assert.is_true(check("/no-content"))
    assert.is_true(check("/moved"))
    assert.same({ false, "status 418" }, { check("/teapot") })
    assert.same({ false, "status 204" }, { check("/no-content", 200) })
    assert.is_true(check("/no-content", 204))
    assert.is_true(check("/no-content", { 200, 204 }))
    assert.same({ false, "status 204" }, { check("/no-content", { 200, 201 }) })
    assert.is_true(check("/no-content", "2xx"))
    assert.same({ false, "status 301" }, { check("/moved", "2xx") })
    assert.is_true(check("/moved", "3xx"))
    assert.is_true(check("/teapot", 418))
    assert.is_true(check("/teapot", "4XX"))
  end)

  it("says a path nginx does not have is not ready: status 404", function()
    assert.same({ false, "status 404" }, { check("/nothing/here") })
  end)

  it("answers false with the reason when ::1 refuses beside a 503 on 127.0.0.1", function()
    -- host omitted: both loopbacks; this nginx listens on 127.0.0.1 only
    assert.same({ false, "status 503" },
      { tpu.check { port = n.port, ready = "http", path = "/healthz" } })
    S.write(up, "")
    assert.is_true(tpu.check { port = n.port, ready = "http", path = "/healthz" })
  end)

  it("sends GET with Host, User-Agent tcp-port-used/<version> and Connection: close", function()
    local base = #S.log_lines(access)
    check("/logged")
    assert.is_true(S.await(5000, function() return #S.log_lines(access) > base end))
    assert.same({ "GET /logged HTTP/1.1|127.0.0.1:" .. n.port .. "|tcp-port-used/" ..
      tpu._VERSION .. "|close" }, S.lines_after(access, base))
  end)

  it("leaves no access line where access_log is off, and one per probe elsewhere", function()
    S.write(up, "")
    local errors = n.prefix .. "/logs/error.log"
    local base, ebase = #S.log_lines(access), #S.log_lines(errors)
    for _ = 1, 50 do assert.is_true(check("/healthz")) end
    for _ = 1, 10 do assert.is_true(check("/logged")) end
    -- the control's lines arrive: then every probe's line has been written
    assert.is_true(S.await(5000, function() return #S.log_lines(access) >= base + 10 end))
    local new = S.lines_after(access, base)
    assert.are.equal(10, #new)
    for _, line in ipairs(new) do assert.matches("^GET /logged ", line) end
    -- nor anything in the error log (a reset would be "connection reset by peer")
    assert.same({}, S.lines_after(errors, ebase))
  end)

  it("is EPROTO when the redis or postgres exchange meets nginx", function()
    for _, kind in ipairs { "redis", "postgres" } do
      local ok, err, code = tpu.check { port = n.port, host = "127.0.0.1", ready = kind }
      assert.is_nil(ok)
      assert.are.equal("EPROTO", code)
      assert.matches("^receive 127%.0%.0%.1:" .. n.port .. ": protocol error %(not a", err)
    end
  end)

  it("leaves no descriptor behind", function()
    local before = H.fd_count()
    for _ = 1, 20 do
      check("/healthz")
      tpu.check { port = n.port, host = "127.0.0.1", ready = "redis" }
    end
    assert.are.equal(before, H.fd_count())
  end)
end)
