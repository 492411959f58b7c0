--- Calls of the tcp_port_used API written as data, so that one list runs
-- unchanged through every transport (this process, a child on another
-- Lua, an nginx worker), and the outcomes compared. Plain Lua that loads
-- on every runtime and inside nginx.
--   call:    { fn = "check", args = { ... }, n = #args, label = "..." [, pick = port]
--              [, callback = i] }
--            (pick: the answer for that port of check_many's tables;
--            callback: a callback form such as on_used, given a recording
--            function as argument i; a table { fn = "raise" } in an
--            options table stands for a function that raises)
--   outcome: { raised = message } or { v = "true" | "false" | "nil" | ...,
--              err = second value, code = third value, leak = the first
--              "file.lua:N:" in the message or err (a public function called
--              straight from pcall has no caller to name, so any position is
--              one inside the code) }; of a callback form, the values its
--              callback got, and returned = what the call returned, calls =
--              how often the callback ran, early = true when it ran before
--              the call returned, rest = the callback's values after the third
local C = {}

local unpack = table.unpack or unpack -- luacheck: ignore 143
local load_string = loadstring or load -- luacheck: ignore 113

local function sorted_keys(t)
  local nums, strs = {}, {}
  for k in pairs(t) do
    if type(k) == "number" then nums[#nums + 1] = k else strs[#strs + 1] = tostring(k) end
  end
  table.sort(nums)
  table.sort(strs)
  for _, k in ipairs(strs) do nums[#nums + 1] = k end
  return nums
end

local function number(v)
  if v ~= v then return "0/0" end
  if v == 0 and 1 / v < 0 then return "-0.0" end
  if v == math.huge then return "1/0" end
  if v == -math.huge then return "-1/0" end
  if math.type and math.type(v) == "integer" then return tostring(v) end
  if v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then return string.format("%d", v) end
  return string.format("%.17g", v)
end

--- A Lua literal of v (nil, booleans, numbers, strings, tables of them).
function C.literal(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" then return number(v) end
  if t == "table" then
    local parts = {}
    for _, k in ipairs(sorted_keys(v)) do
      parts[#parts + 1] = "[" .. C.literal(k) .. "]=" .. C.literal(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(v)
end

--- The value of a literal written by C.literal.
function C.load(s)
  return assert(load_string("return " .. s, "=literal"))()
end

--- An error message without the position error() puts in front of it,
-- first line only (a traceback may follow).
function C.strip(msg)
  msg = tostring(msg):match("^[^\n]*")
  return (msg:gsub("^[^:]*:%d+: ", ""))
end

-- Stand-ins for functions in the options of a call, which a literal cannot hold.
local FUNCTIONS = {
  raise = function() error("raised by the caller's function", 0) end,
}

local function with_functions(v)
  if type(v) ~= "table" then return v end
  if v.fn ~= nil and FUNCTIONS[v.fn] then return FUNCTIONS[v.fn] end
  local t = {}
  for k, x in pairs(v) do t[k] = with_functions(x) end
  return t
end

-- A value for comparing: tables and functions by their type alone.
local function scalar(v)
  local t = type(v)
  if t == "table" or t == "function" or t == "userdata" or t == "thread" then return t end
  return tostring(v)
end

--- The first position ("x.lua:12:") a message names, or nil.
function C.position(msg)
  return type(msg) == "string" and msg:match("[%w_%-%./]*%.lua:%d+:") or nil
end

local function outcome(ok, ...)
  if not ok then
    local msg = tostring((...))
    return { raised = C.strip(msg), leak = C.position(msg) }
  end
  local v, err, code = ...
  if type(v) == "table" and v.state then
    -- an explanation (explain): its state, its text and the probe's code
    return { v = "explain " .. v.state, err = v.text, code = v.probe[3] }
  end
  return { v = tostring(v), err = err ~= nil and tostring(err) or nil,
           code = code ~= nil and tostring(code) or nil, leak = C.position(err) }
end

-- The outcome of check_many's tables for one port.
local function picked(pick, ok, ...)
  local v, err, code = ...
  if not ok or pick == nil or type(v) ~= "table" then return outcome(ok, ...) end
  return outcome(true, v[pick], type(err) == "table" and err[pick] or nil,
    type(code) == "table" and code[pick] or nil)
end

-- The outcome of a callback form: the call made with a recording
-- callback, then settle(done) lets the host's loop run until done() and
-- until the host has nothing left to do (a second call of the callback
-- would come before that).
local function called_back(f, c, settle)
  local a = {}
  for i = 1, c.n or #c.args do a[i] = with_functions(c.args[i]) end
  local rec, returned = { calls = 0 }, false
  a[c.callback] = function(...)
    rec.calls = rec.calls + 1
    if rec.calls == 1 then
      rec.early, rec.values = not returned, { n = select("#", ...), ... }
    end
  end
  local r = { pcall(f, unpack(a, 1, c.n or #c.args)) }
  returned = true
  if not r[1] then return outcome(false, r[2]) end
  settle(function() return rec.calls > 0 end)
  local v = rec.values
  local o = v and outcome(true, unpack(v, 1, v.n)) or { v = "(never called back)" }
  if v and v.n > 3 then
    local rest = {}
    for i = 4, v.n do rest[#rest + 1] = scalar(v[i]) end
    o.rest = table.concat(rest, ", ")
  end
  o.returned, o.calls, o.early = scalar(r[2]), rec.calls, rec.early or nil
  return o
end

--- Runs every call on mod (a module table of the API) and returns their
-- outcomes in order. With fill, every descriptor the process may still
-- open is taken first (and given back after); `filled` says how many.
-- settle(done) runs the host's loop for the callback forms (see
-- called_back); without it they are not run.
function C.run(mod, calls, fill, settle)
  local hold = {}
  if fill then
    while true do
      local f = io.open("/dev/null")
      if not f then break end
      hold[#hold + 1] = f
    end
  end
  local out = {}
  for i, c in ipairs(calls) do
    local f = mod[c.fn]
    if type(f) ~= "function" then
      out[i] = { raised = "no function " .. tostring(c.fn) }
    elseif c.callback then
      out[i] = settle and called_back(f, c, settle) or { raised = "no loop to call back from" }
    else
      out[i] = picked(c.pick, pcall(f, unpack(c.args, 1, c.n or #c.args)))
    end
  end
  for _, f in ipairs(hold) do f:close() end
  out.filled = fill and #hold or nil
  return out
end

--- One outcome, for people.
function C.show(o)
  if not o then return "(no outcome)" end
  if o.raised then return "raised " .. string.format("%q", o.raised) end
  local s = o.v
  if o.code then s = s .. "  " .. o.code end
  if o.err then s = s .. "  " .. string.format("%q", o.err) end
  if o.rest then s = s .. "  (then " .. o.rest .. ")" end
  if o.calls then
    s = s .. string.format("  [returned %s; called back %d time(s)%s]", o.returned, o.calls,
      o.early and ", before the call returned" or "")
  end
  return s
end

--- Whether two outcomes agree: both raised the same error, or both
-- returned the same first value and the same code (of a callback form:
-- and returned the same, called back as often, as early, with the same
-- values after the third).
function C.alike(a, b)
  if not a or not b then return false end
  if a.raised or b.raised then return a.raised == b.raised end
  return a.v == b.v and a.code == b.code and a.returned == b.returned and a.calls == b.calls
    and a.early == b.early and a.rest == b.rest
end

--- The calls whose outcomes under `name` differ from those under
-- `base_name`, as a readable report ("" when all agree). agree(call, a,
-- b) decides a pair (default C.alike).
function C.diff(calls, base_name, base, name, other, agree)
  agree = agree or function(_, a, b) return C.alike(a, b) end
  local lines, n = {}, 0
  local w = math.max(#base_name, #name)
  local function pad(s) return s .. string.rep(" ", w - #s) end
  for i, c in ipairs(calls) do
    if not agree(c, base[i], other[i]) then
      n = n + 1
      lines[#lines + 1] = "  " .. (c.label or C.literal(c))
      lines[#lines + 1] = "    " .. pad(base_name) .. ": " .. C.show(base[i])
      lines[#lines + 1] = "    " .. pad(name) .. ": " .. C.show(other[i])
    end
  end
  if n == 0 then return "" end
  return n .. " of " .. #calls .. " calls disagree between " .. base_name .. " and " .. name .. ":\n" ..
    table.concat(lines, "\n")
end

return C
