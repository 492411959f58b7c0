--- Calls of the tcp_port_used API written as data, so that one list runs
-- unchanged through every transport (this process, a child on another
-- Lua, an nginx worker), and the outcomes compared. Plain Lua that loads
-- on every runtime and inside nginx.
--   call:    { fn = "check", args = { ... }, n = #args, label = "..." [, pick = port] }
--            (pick: the answer for that port of check_many's tables)
--   outcome: { raised = message } or { v = "true" | "false" | "nil" | ...,
--              err = second value, code = third value }
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

local function outcome(ok, ...)
  if not ok then return { raised = C.strip((...)) } end
  local v, err, code = ...
  if type(v) == "table" and v.state then
    -- an explanation (explain): its state, its text and the probe's code
    return { v = "explain " .. v.state, err = v.text, code = v.probe[3] }
  end
  return { v = tostring(v), err = err ~= nil and tostring(err) or nil,
           code = code ~= nil and tostring(code) or nil }
end

-- The outcome of check_many's tables for one port.
local function picked(pick, ok, ...)
  local v, err, code = ...
  if not ok or pick == nil or type(v) ~= "table" then return outcome(ok, ...) end
  return outcome(true, v[pick], type(err) == "table" and err[pick] or nil,
    type(code) == "table" and code[pick] or nil)
end

--- Runs every call on mod (a module table of the API) and returns their
-- outcomes in order. With fill, every descriptor the process may still
-- open is taken first (and given back after); `filled` says how many.
function C.run(mod, calls, fill)
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
  return s
end

--- Whether two outcomes agree: both raised the same error, or both
-- returned the same first value and the same code.
function C.alike(a, b)
  if not a or not b then return false end
  if a.raised or b.raised then return a.raised == b.raised end
  return a.v == b.v and a.code == b.code
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
