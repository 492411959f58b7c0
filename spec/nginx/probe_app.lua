--- The handler of spec/nginx/probe.conf: runs a list of calls of
-- tcp_port_used.ngx (spec/calls.lua) in the content phase and answers
-- their outcomes. With ?fill=1 the calls run with every descriptor of the
-- worker in use.
-- luacheck: globals ngx
local C = require "calls"

local M = {}

function M.run()
  ngx.req.read_body()
  local calls = C.load(assert(ngx.req.get_body_data(), "no calls in the request body"))
  local outcomes = C.run(require "tcp_port_used.ngx", calls, ngx.var.arg_fill == "1")
  ngx.say(C.literal(outcomes))
end

return M
