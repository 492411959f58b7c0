-- Readiness through tcp_port_used.ngx inside a real nginx with
-- lua-nginx-module (spec/nginx/ready_ngx.conf): the same exchanges over
-- cosockets ("unix:/path") and over the core's stream polled between
-- ngx.sleep calls (this machine's addresses), against a real
-- redis-server, the nginx itself, and a listener that never answers; the
-- worker keeps serving meanwhile, and each answer is the core's.
local tpu = require "tcp_port_used"
local socket = require "socket"
local H = require "helpers"
local S = require "servers"

local MODULES = {
  "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/lib/nginx/modules/ngx_http_lua_module.so",
}

local function get(port, path, timeout_s)
  local c = socket.tcp()
  c:settimeout(timeout_s or 20)
  assert(c:connect("127.0.0.1", port))
  assert(c:send("GET " .. path .. " HTTP/1.0\r\nHost: spec\r\n\r\n"))
  local data = c:receive("*a")
  c:close()
  return tonumber(data:match("^HTTP/%d%.%d (%d+)")), (data:match("\r\n\r\n(.*)$") or ""):gsub("\n$", "")
end

local function query(t)
  local q = {}
  for k, v in pairs(t) do
    q[#q + 1] = k .. "=" .. tostring(v):gsub("[^%w/._-]", function(c)
      return string.format("%%%02X", c:byte())
    end)
  end
  table.sort(q)
  return table.concat(q, "&")
end

-- The core's answer, shown as the nginx handler shows it.
local function core_shows(o)
  local r = { tpu.check(o) }
  local out = {}
  for i = 1, 3 do if r[i] ~= nil or i == 1 then out[#out + 1] = tostring(r[i]) end end
  return table.concat(out, " ")
end

describe("readiness through tcp_port_used.ngx in a real nginx", function()
  for _, p in ipairs { MODULES[1], MODULES[2], H.root .. "/build/jit/tcp_port_used/core.so" } do
    if S.slurp(p) == "" then
      pending("needs " .. p)
      return
    end
  end
  local redis, why = S.redis_start("--unixsocket %DIR%/redis.sock --unixsocketperm 777")
  local n
  if redis then
    n, why = S.nginx_start(S.slurp(H.root .. "/spec/nginx/ready_ngx.conf"), {
      LOAD_MODULES = "load_module " .. MODULES[1] .. ";\nload_module " .. MODULES[2] .. ";",
      REDIS_PORT = redis.port,
    })
    if not n then S.redis_stop(redis) end
  end
  if not n then
    pending(why)
    return
  end
  local silent = H.listen()
  teardown(function()
    silent.close()
    S.nginx_stop(n)
    S.redis_stop(redis)
  end)

  local function check(o)
    local status, body = get(n.port, "/check?" .. query(o))
    assert.are.equal(200, status, body)
    return body
  end

  it("answers as the core does, over the core's stream and over cosockets (unix:)", function()
    local cases = {
      { port = redis.port, host = "127.0.0.1", ready = "redis" },
      { port = redis.port, ready = "redis" },
      { port = redis.port, host = "127.0.0.1", ready = "http" },
      { port = n.port, host = "127.0.0.1", ready = "http", path = "/healthz" },
      { port = n.port, host = "127.0.0.1", ready = "http", path = "/ping", status = "2xx" },
      { port = n.port, host = "127.0.0.1", ready = "redis" },
      { port = n.port, host = "127.0.0.1", ready = "postgres" },
      { unix = redis.dir .. "/redis.sock", ready = "redis" },
      { unix = redis.dir .. "/redis.sock", ready = "http" },
      { unix = redis.dir .. "/missing.sock", ready = "redis" },
      { unix = redis.dir .. "/missing.sock" },
      { unix = redis.dir .. "/redis.sock" },
    }
    for _, o in ipairs(cases) do
      assert.are.equal(core_shows(o), check(o), query(o))
    end
    assert.are.equal("true", check { unix = redis.dir .. "/redis.sock", ready = "redis" })
    assert.are.equal("false status 503",
      check { port = n.port, host = "127.0.0.1", ready = "http", path = "/healthz" })
  end)

  it("checks in init_worker, where it may block", function()
    assert.are.equal(200, (get(n.port, "/result?key=init_worker")))
    assert.are.equal("true", select(2, get(n.port, "/result?key=init_worker")))
  end)

  it("keeps serving while an exchange waits for a reply that never comes", function()
    local c = socket.tcp()
    c:settimeout(20)
    assert(c:connect("127.0.0.1", n.port))
    assert(c:send("GET /check?" .. query { port = silent.port, host = "127.0.0.1", ready = "redis",
      timeout = 1500 } .. " HTTP/1.0\r\n\r\n"))
    local t0 = socket.gettime()
    assert.are.equal("pong", select(2, get(n.port, "/ping", 5)))
    assert.is_true(socket.gettime() - t0 < 1, "the worker was blocked")
    local data = c:receive("*a")
    c:close()
    assert.matches("\r\n\r\nnil receive 127%.0%.0%.1:" .. silent.port .. ": timed out ETIMEDOUT\n$", data)
  end)

  it("waits in a request until a health route turns 200, the worker serving meanwhile", function()
    os.remove(n.prefix .. "/up")
    local c = socket.tcp()
    c:settimeout(30)
    assert(c:connect("127.0.0.1", n.port))
    assert(c:send("GET /wait?" .. query { port = n.port, host = "127.0.0.1", ready = "http",
      path = "/healthz", timeout = 20000 } .. " HTTP/1.0\r\n\r\n"))
    -- the waiting request's own probes of this nginx are served: it is not blocked
    assert.are.equal("false status 503",
      check { port = n.port, host = "127.0.0.1", ready = "http", path = "/healthz" })
    S.write(n.prefix .. "/up", "")
    local data = c:receive("*a")
    c:close()
    assert.matches("\r\n\r\ntrue\n$", data)
  end)
end)
