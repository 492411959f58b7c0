--- The handlers of spec/nginx/ready_ngx.conf: readiness probes through
-- tcp_port_used.ngx, their options from the query string, their values
-- in the response body (for spec/ready_ngx_spec.lua).
-- luacheck: globals ngx
local ad = require "tcp_port_used.ngx"

local M = {}

-- The values, trailing nils left out (as spec/nginx/app.lua shows them).
local show = require("app").show

local function opts()
  local q = ngx.req.get_uri_args()
  return {
    port = tonumber(q.port), host = q.host, unix = q.unix, ready = q.ready, path = q.path,
    status = tonumber(q.status) or q.status, timeout_ms = tonumber(q.timeout),
  }
end

-- init_worker: a check may block there (no request is served yet).
function M.init_worker(redis_port)
  ngx.shared.results:set("init_worker",
    show(ad.check { port = redis_port, host = "127.0.0.1", ready = "redis" }))
end

function M.check()
  ngx.say(show(ad.check(opts())))
end

function M.wait()
  local o = opts()
  o.timeout_ms, o.attempt_ms = tonumber(ngx.var.arg_timeout), tonumber(ngx.var.arg_attempt)
  ngx.say(show(ad.wait_until_used(o)))
end

function M.result()
  ngx.say(tostring(ngx.shared.results:get(ngx.var.arg_key)))
end

return M
