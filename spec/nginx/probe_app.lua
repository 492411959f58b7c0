--- The handler of spec/nginx/probe.conf: runs a list of calls of
-- tcp_port_used.ngx (spec/calls.lua) in the content phase and answers
-- their outcomes. With ?fill=1 the calls run with every descriptor of the
-- worker in use.
-- luacheck: globals ngx
local C = require "calls"

local M = {}

-- The callback forms' timers: until done() and no timer is left running
-- or pending (a second call of a callback would come before), sleeping
-- between looks, as nginx offers no event for a timer's end.
local function settle(done)
  local deadline = ngx.now() + 60
  repeat
    ngx.sleep(0.001)
  until done() and ngx.timer.running_count() == 0 and ngx.timer.pending_count() == 0
    or ngx.now() > deadline
end

function M.run()
  ngx.req.read_body()
  local calls = C.load(assert(ngx.req.get_body_data(), "no calls in the request body"))
  local outcomes = C.run(require "tcp_port_used.ngx", calls, ngx.var.arg_fill == "1", settle)
  ngx.say(C.literal(outcomes))
end

return M
