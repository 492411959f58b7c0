--- Every way to call tcp_port_used behind one interface, for the specs
-- that run one list of calls (spec/calls.lua) through all of them:
--   core       the core module, in a child on this runtime
--   uv         tcp_port_used.uv with the C core, in a child
--   uv_nocore  tcp_port_used.uv where `require "tcp_port_used.core"` fails
--   ngx        tcp_port_used.ngx in the content phase of a real nginx
-- A runner runs a whole list in one child or one request, never one per
-- call. Plain Lua (no busted): a child in a network namespace uses it too.
local H = require "helpers"
local C = require "calls"

local T = {}

T.KINDS = { "core", "uv", "uv_nocore", "ngx" }
T.NAMES = {
  core = "the core module",
  uv = "tcp_port_used.uv with the C core",
  uv_nocore = "tcp_port_used.uv without the C core",
  ngx = "tcp_port_used.ngx in nginx",
}

local MARK = "\n--outcomes--\n"

-- A literal in a child's output: the mark, its length, the literal (the
-- shell may add a line after it, "Segmentation fault").
local function marked(literal)
  return MARK .. #literal .. "\n" .. literal .. "\n"
end

-- The literal marked in a child's output, or nil.
local function after_mark(out)
  local _, e = out:find(MARK, 1, true)
  if not e then return nil end
  local len, body = out:match("^(%d+)\n()", e + 1)
  return len and out:sub(body, body + tonumber(len) - 1)
end

--- In a child: runs the calls in file through kind and prints the outcomes.
function T.child(kind, file, fill)
  local mod
  if kind == "core" then
    mod = require "tcp_port_used"
  else
    if kind == "uv_nocore" then
      package.preload["tcp_port_used.core"] = function()
        error("tcp_port_used.core is not built here (spec/transports.lua)")
      end
    end
    mod = require "tcp_port_used.uv"
    if mod.has_core ~= (kind == "uv") then
      error("tcp_port_used.uv says has_core = " .. tostring(mod.has_core) .. " as " .. kind)
    end
  end
  local f = assert(io.open(file))
  local calls = C.load(f:read("*a"))
  f:close()
  local settle
  if kind ~= "core" then
    -- luv's default loop runs until no handle is left: every callback due has run
    local uv = require "luv"
    settle = function() uv.run() end
  end
  io.write(marked(C.literal(C.run(mod, calls, fill, settle))))
  -- out before the interpreter closes: a crash there is reported apart
  io.stdout:flush()
end

local function child_runner(kind, opts)
  local r = {}
  function r.run(_, calls)
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(C.literal(calls))
    f:close()
    local cmd = H.lua_cmd(string.format("require('transports').child(%q, %q, %s)",
      kind, file, tostring(opts.fill == true)))
    if opts.ulimit then cmd = "ulimit -n " .. opts.ulimit .. " && " .. cmd end
    local out, rc = H.run(cmd .. " 2>&1")
    os.remove(file)
    local literal = after_mark(out)
    if not literal then
      error(T.NAMES[kind] .. ": the child failed (status " .. tostring(rc) .. "):\n" .. out, 2)
    end
    local outcomes = C.load(literal)
    -- the child answered every call, then failed on its way out
    if rc ~= 0 then outcomes.exit = "status " .. tostring(rc) .. ", output ending: " .. out:sub(-200) end
    return outcomes
  end
  function r.close() end
  return r
end

local function ngx_runner(opts)
  local NG = require "ngxrun"
  local absent = NG.missing()
  if absent then return nil, "needs " .. absent end
  local n = NG.start("probe.conf")
  local r = { nginx = n }
  function r.run(_, calls)
    return C.load(n:body("/run" .. (opts.fill and "?fill=1" or ""), C.literal(calls), 120))
  end
  function r.close() n:stop() end
  return r
end

--- A runner for kind (r:run(calls) -> outcomes, r:close()), or nil and
-- why it cannot run here. opts: fill (every descriptor in use while the
-- calls run), ulimit (the children's open-file limit).
function T.open(kind, opts)
  opts = opts or {}
  if kind == "ngx" then return ngx_runner(opts) end
  if kind ~= "core" then
    local out, rc = H.run(H.lua_cmd("require 'luv'") .. " 2>&1")
    if rc ~= 0 then return nil, "luv does not load on " .. H.lua .. ": " .. out:sub(1, 200) end
  end
  return child_runner(kind, opts)
end

--- The ports of the differential table: what holds each, made in this
-- process so that every transport probes the same sockets. Listeners get
-- a deep backlog and are drained between runs (a full queue would turn
-- answers into timeouts). open: a listener on the loopback; wild: on the
-- wildcard (wild6 IPV6_V6ONLY, dual6 dual-stack); refused: bound, not
-- listening; unbound: nothing there. udp: a bound UDP socket, on the
-- loopback or the wildcard (udpwild6 IPV6_V6ONLY, udpdual6 dual-stack).
T.FIXTURES = {
  open4 = function() return H.listen("127.0.0.1", 0, 1024) end,
  open6 = function() return H.listen("::1", 0, 1024) end,
  wild4 = function() return H.listen("0.0.0.0", 0, 1024) end,
  wild6 = function() return H.listen("::", 0, 1024) end,
  dual6 = function() return H.listen("::", 0, 1024, false) end,
  refused4 = function() return H.reserve("127.0.0.1") end,
  refused6 = function() return H.reserve("::1") end,
  unbound = function() return { port = H.free_port(), close = function() end } end,
  udp4 = function() return H.udp("127.0.0.1") end,
  udp6 = function() return H.udp("::1") end,
  udpwild4 = function() return H.udp("0.0.0.0") end,
  udpwild6 = function() return H.udp("::") end,
  udpdual6 = function() return H.udp("::", 0, { v6only = false }) end,
}

-- The wait whose values a callback form passes on.
local WAIT_OF = { on_used = "wait_until_used", on_free = "wait_until_free" }

--- Runs the cross product of t.ports (fixture names) x t.hosts (false:
-- host omitted) x t.modes (with t.timeout_ms, if given), the same for
-- t.udp_ports in UDP's modes (H.udp_modes), then t.extra
-- (calls whose port is a fixture name or a number), then t.callbacks
-- (callback forms: { fn =, port =, opts =, cb =, no_cb =, with_wait =,
-- label = }, port nil for the form with one options table; with_wait:
-- followed by its matching wait, `twin` = the callback's index), through
-- each kind of t.kinds. Returns { calls =,
-- outcomes = { [kind] = list }, missing = { [kind] = why }, ports = }.
function T.table_run(t)
  local held, ports = {}, {}
  local udp_ports = t.udp_ports or {}
  for _, list in ipairs { t.ports, udp_ports } do
    for _, name in ipairs(list) do
      held[name] = T.FIXTURES[name]()
      ports[name] = held[name].port
    end
  end
  local calls = {}
  local function add(fn, port_name, o, label)
    local a = {}
    for k, v in pairs(o) do a[k] = v end
    a.port = ports[port_name] or port_name
    calls[#calls + 1] = { fn = fn, args = { a }, n = 1, label = fn .. " " .. label }
  end
  local function cross(list, modes, proto)
    for _, p in ipairs(list) do
      for _, h in ipairs(t.hosts) do
        for _, m in ipairs(modes) do
          add("check", p, { host = h or nil, mode = m, timeout_ms = t.timeout_ms, proto = proto },
            string.format("%s(%d) host=%s mode=%s%s", p, ports[p], h and string.format("%q", h) or "omitted",
              m, proto and " proto=" .. proto or ""))
        end
      end
    end
  end
  cross(t.ports, t.modes)
  cross(udp_ports, H.udp_modes, "udp")
  for _, e in ipairs(t.extra or {}) do
    add(e.fn or "check", e.port, e.opts, e.label)
  end
  -- a fixture's name as port, or in opts' port and ports, is its number
  local function number(v) return ports[v] or v end
  for _, e in ipairs(t.callbacks or {}) do
    local o = e.opts
    if type(o) == "table" then
      o = {}
      for k, v in pairs(e.opts) do o[k] = v end
      o.port = number(o.port)
      if type(o.ports) == "table" then
        o.ports = {}
        for i, p in ipairs(e.opts.ports) do o.ports[i] = number(p) end
      end
    end
    -- e.cb, or nil with e.no_cb: what to pass in place of the recording callback
    local a, at
    if e.port ~= nil then a, at = { number(e.port), o }, 3 else a, at = { o }, 2 end
    local recorded = e.cb == nil and not e.no_cb
    a[at] = e.cb
    calls[#calls + 1] = { fn = e.fn, args = a, n = at, callback = recorded and at or nil,
                          label = e.fn .. " " .. e.label }
    -- the wait whose values the callback must get (twin: the callback's call)
    if recorded and e.with_wait then
      local w = {}
      for k, v in pairs(type(o) == "table" and o or {}) do w[k] = v end
      if e.port ~= nil then w.port = number(e.port) end
      calls[#calls + 1] = { fn = WAIT_OF[e.fn], args = { w }, n = 1, twin = #calls,
                            label = WAIT_OF[e.fn] .. " as " .. e.fn .. " " .. e.label }
    end
  end
  local res = { calls = calls, outcomes = {}, missing = {}, ports = ports }
  for _, kind in ipairs(t.kinds or T.KINDS) do
    local r, why = T.open(kind)
    if not r then
      res.missing[kind] = why
    else
      local ok, out = pcall(r.run, r, calls)
      r:close()
      if not ok then error(out, 0) end
      res.outcomes[kind] = out
    end
    for _, f in pairs(held) do
      if f.drain then f.drain() end
    end
  end
  for _, f in pairs(held) do f.close() end
  return res
end

--- T.table_run in a child (the caller's namespace), its result printed.
function T.print_table_run(t)
  io.write(marked(C.literal(T.table_run(t))))
end

--- The result T.print_table_run printed in out, or nil.
function T.parse(out)
  local literal = after_mark(out)
  return literal and C.load(literal)
end

return T
