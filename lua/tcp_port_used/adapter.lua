--- What tcp_port_used.ngx and tcp_port_used.uv share, so that the same
-- arguments give the same result in both: the callback forms' argument
-- parsing and delivery, whether the caller may yield, and the nginx
-- phases that allow waiting. Each adapter supplies only what its host
-- does differently: how a job runs in the caller's turn (its local
-- `perform`: uv suspends a coroutine or runs the loop, ngx picks by
-- nginx phase) and how it starts in the background (the `start` given to
-- define_callback). A function new to both adapters parses its arguments
-- with args.lua and returns perform(fname, ..., job) in each; a new
-- callback form is one define_callback in each.
-- Needs neither the C core nor a host, so tcp_port_used.uv loads without
-- the core and the core module (sched.lua) reads the phase table here.
local args = require "tcp_port_used.args"

local M = {}

local type, pairs, tostring, error = type, pairs, tostring, error
local isyieldable, running = coroutine.isyieldable, coroutine.running

--- The nginx phases in which cosockets and ngx.sleep both work
-- (lua-nginx-module's README): a wait may suspend the request there.
M.NGX_YIELD_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

--- Raises the error of a function called in an nginx phase where it can
-- neither yield nor block (doing: "probe" or "wait"), at level as the
-- caller would give it to error().
function M.phase_error(fname, phase, doing, level)
  error(string.format("%s: cannot %s in the nginx '%s' phase: it has no cosockets or " ..
    "ngx.sleep and must not block (call it from a rewrite, access, content or timer " ..
    "handler, or use tcp_port_used.ngx's on_used/on_free, which run it in a timer)",
    fname, doing, phase), level + 1)
end

--- Whether the running code may yield (5.1 has no isyieldable: any
-- coroutine but the main one may).
function M.can_yield()
  if isyieldable then return isyieldable() end
  local co, main = running()
  return co ~= nil and not main
end

--- Defines mod[fname], a callback form: fname(port, opts, cb) or
-- fname(opts, cb). The options go through parse(fname, t, parse_arg)
-- (default args.wait_table: on_used/on_free take a wait's options), the
-- port of the first form included, which opts must then not hold too.
-- start(fname, o, cb) runs the job in the background, arranging for cb to
-- run once, from the host's loop, after mod[fname] has returned; what it
-- returns mod[fname] returns. It raises at level 3 (start, mod[fname],
-- its caller).
function M.define_callback(mod, fname, start, parse, parse_arg)
  parse = parse or args.wait_table
  mod[fname] = function(a, b, c)
    local t, cb, cb_argn = a, b, 2
    if type(a) ~= "table" then
      if b ~= nil and type(b) ~= "table" then
        args.fail(fname, 2, "opts must be a table or nil", b, 3)
      end
      t = {}
      for k, v in pairs(b or {}) do t[k] = v end
      if t.port ~= nil or t.ports ~= nil then
        error(string.format("bad argument #2 to '%s' (opts must not hold port or ports " ..
          "when the port is argument #1)", fname), 2)
      end
      t.port, cb, cb_argn = a, c, 3
    end
    local o = parse(fname, t, parse_arg)
    if type(cb) ~= "function" then
      args.fail(fname, cb_argn, "callback must be a function", cb, 3)
    end
    local r, err = start(fname, o, cb)
    return r, err
  end
end

--- on_used and on_free over start (see define_callback).
function M.define_callbacks(mod, start)
  M.define_callback(mod, "on_used", start, args.wait_table, true)
  M.define_callback(mod, "on_free", start, args.wait_table, false)
end

--- Hands a background job's outcome to its callback, exactly once:
-- deliver(cb, true, values...) calls cb(values...); deliver(cb, false,
-- err) calls cb(nil, text of err), so that an error raised by on_retry or
-- opts.sleep (or the host shutting down) still reaches the caller.
function M.deliver(cb, ok, ...)
  if ok then return cb(...) end
  return cb(nil, tostring((...)))
end

return M
