--- The handlers of spec/nginx/nginx.conf: each runs tcp_port_used.ngx in
-- one nginx phase and reports what it saw in the response, in the shared
-- dict "results" or in the error log, for spec/ngx_spec.lua to read.
-- luacheck: globals ngx
local ad = require "tcp_port_used.ngx"
local core = require "tcp_port_used.core"

local M = {}

local init_result, init_on_used_error

-- The values, trailing nils left out (the C core returns true, nil, nil
-- where the cosocket probe returns true).
local function show(...)
  local out, n = {}, select("#", ...)
  while n > 0 and select(n, ...) == nil do n = n - 1 end
  for i = 1, n do out[i] = tostring((select(i, ...))) end
  return table.concat(out, " ")
end

M.show = show

local function record(key)
  local dict = ngx.shared.results
  return function(...)
    dict:incr("calls " .. key, 1, 0)
    dict:set(key, show(...))
    ngx.log(ngx.NOTICE, "callback ", key, ": ", show(...))
  end
end

-- init_by_lua: a blocking wait for a port that a child opens later.
function M.init(port)
  local t0 = core.now()
  local ok, err = ad.wait_until_used { port = port, timeout_ms = 10000 }
  init_result = show(ok, err, math.floor(core.now() - t0))
  init_on_used_error = select(2, pcall(ad.on_used, port, nil, function() end))
end

function M.init_worker(now_port, later_port, refused_port)
  local dict = ngx.shared.results
  local returned = false
  ad.on_used(now_port, nil, function(ok, err)
    dict:incr("calls worker_now", 1, 0)
    dict:set("worker_now", show(ok, tostring(err), returned and "after" or "before"))
  end)
  returned = true
  ad.on_used({ port = later_port, timeout_ms = 30000 }, record("worker_later"))
  ad.on_used(refused_port, { timeout_ms = 300 }, record("worker_timeout"))
  ad.on_free({ port = refused_port }, record("worker_free"))
  dict:set("worker_wait_error", select(2, pcall(ad.wait_until_used, now_port)))
  dict:set("worker_check", show(ad.check(now_port)))
end

function M.result()
  local key = ngx.req.get_uri_args().key
  if key == "init" then return ngx.say(init_result) end
  if key == "init_on_used" then return ngx.say(init_on_used_error) end
  ngx.say(tostring(ngx.shared.results:get(key)))
end

local function opts()
  local q = ngx.req.get_uri_args()
  return {
    port = tonumber(q.port), host = q.host, mode = q.mode, close = q.close,
    timeout_ms = tonumber(q.timeout), retry_ms = tonumber(q.retry), proto = q.proto,
  }
end

function M.check()
  local o = opts()
  o.retry_ms = nil
  ngx.say(show(ad.check(o)))
end

function M.wait()
  local o = opts()
  o.on_retry = function(info)
    ngx.shared.results:set("retries " .. o.port, info.attempt)
  end
  local f = ngx.var.arg_free and ad.wait_until_free or ad.wait_until_used
  ngx.say(show(f(o)))
end

function M.on_used()
  local o = opts()
  ngx.say("returned ", show(ad.on_used(o.port, { timeout_ms = o.timeout_ms, retry_ms = o.retry_ms,
    proto = o.proto, mode = o.mode }, record("on_used " .. o.port))))
end

function M.bad()
  ngx.say(select(2, pcall(ad.wait_until_used, 0)))
  ngx.say(select(2, pcall(ad.check, { port = 80, mode = "nope" })))
  ngx.say(select(2, pcall(ad.on_used, 80, nil, "not a function")))
  ngx.say(select(2, pcall(ad.on_free, 80, { port = 81 }, print)))
  ngx.say(select(2, pcall(ad.check, { port = 80, proto = "udp", mode = "connect" })))
  ngx.say(select(2, pcall(ad.wait_until_used, { port = 80, proto = "sctp" })))
end

function M.header_filter(port)
  ngx.header["X-Wait-Error"] = select(2, pcall(ad.wait_until_used, port))
  ngx.header["X-Check-Error"] = select(2, pcall(ad.check, port))
  ngx.header["X-Core-Wait-Error"] = select(2, pcall(require("tcp_port_used").wait_until_used, port))
end

function M.log(port)
  ngx.log(ngx.ERR, "log phase: ", select(2, pcall(ad.wait_until_free, port)))
end

return M
