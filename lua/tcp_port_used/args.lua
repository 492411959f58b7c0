--- Argument checking and option parsing, shared by every entry point
-- (the core module, the adapters, the CLI), so that a bad argument gets
-- the same message wherever it is passed.
local quote = require("tcp_port_used.words").quote
-- Names, defaults and allowed values: declared once, in api.lua.
local api = require "tcp_port_used.api"

local M = {}

local type, tostring, string_format, find, next, select, pcall =
  type, tostring, string.format, string.find, next, select, pcall

local function show(v)
  if type(v) == "string" then return quote(v) end
  if type(v) == "number" then
    -- the same digits on every runtime (5.4 writes 1e13 as "1e+13" or
    -- "10000000000000.0" by subtype, LuaJIT as "10000000000000")
    if v ~= v then return "nan" end
    if v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then return string_format("%d", v) end
    return string_format("%.14g", v)
  end
  if v == nil or type(v) == "boolean" then return tostring(v) end
  return type(v)
end
M.show = show

-- How many args.protect calls are running: while one is, an argument
-- error is raised as { why = ... }, a value, not a message to parse.
local protected = 0

--- Raises "bad argument #n to 'fname' (why)" at level (see M.fail).
function M.raise(fname, argn, why, level)
  if protected > 0 then error({ why = why }, 0) end
  error(string_format("bad argument #%d to '%s' (%s)", argn, fname, why), level)
end
local raise = M.raise

--- Raises "bad argument #n to 'fname' (what, got value)" at the caller of
-- the public function: the levels are this function, the checker, the
-- normalizer (args.check, args.wait_*), the public function, its caller.
function M.fail(fname, argn, what, value, level)
  raise(fname, argn, what .. ", got " .. show(value), (level or 5) + 1)
end
local fail = M.fail

local function pack(...)
  return { n = select("#", ...), ... }
end

--- protect(f, ...): true and what f(...) returns, or false and why an
-- argument was refused ("timeout_ms must be ..., got 1e+13"), without a
-- function name or a position: the CLI words that as a usage error.
-- Any other error passes through.
function M.protect(f, ...)
  protected = protected + 1
  local r = pack(pcall(f, ...))
  protected = protected - 1
  if r[1] then return true, (table.unpack or unpack)(r, 2, r.n) end -- luacheck: ignore 143
  local e = r[2]
  if type(e) == "table" and type(e.why) == "string" then return false, e.why end
  error(e, 0)
end

local function is_int(v, lo, hi)
  -- (v % 1 is NaN for NaN and the infinities, so they fail too)
  return type(v) == "number" and v % 1 == 0 and v >= lo and v <= hi
end

function M.port(fname, argn, v, name)
  if not is_int(v, 1, 65535) then
    fail(fname, argn, (name or "port") .. " must be an integer in 1..65535", v)
  end
  return v
end

function M.host(fname, argn, v)
  if v == nil then return nil end
  if type(v) ~= "string" then fail(fname, argn, "host must be a string or nil", v) end
  if find(v, "\0", 1, true) then fail(fname, argn, "host must not contain a NUL byte", v) end
  if #v == 0 or #v > 1024 then fail(fname, argn, "host must be 1 to 1024 bytes long", v) end
  return v
end

-- The longest time the C core takes (csrc/checks.c, tpu_check_ms): 1e12
-- ms, about 31 years. Checked here so that a longer one is an argument
-- error naming the option, never one from inside the core.
M.MAX_MS = 1e12
local MAX_MS = M.MAX_MS

local function is_ms(v)
  -- (false for NaN, which fails every comparison)
  return type(v) == "number" and v >= 0 and v <= MAX_MS
end

function M.ms(fname, argn, v, name, default)
  if v == nil then return default end
  if not is_ms(v) then
    fail(fname, argn, name .. " must be a number of milliseconds in 0..1e12", v)
  end
  return v
end

function M.boolean(fname, argn, v, name, default)
  if v == nil and default ~= nil then return default end
  if type(v) ~= "boolean" then fail(fname, argn, name .. " must be a boolean", v) end
  return v
end

function M.func(fname, argn, v, name)
  if v ~= nil and type(v) ~= "function" then
    fail(fname, argn, name .. " must be a function or nil", v)
  end
  return v
end

local function one_of(list)
  local set = {}
  for _, k in ipairs(list) do set[k] = true end
  return set, table.concat(list, ", ")
end

local MODES, MODE_LIST = one_of(api.MODES)
local CLOSES, CLOSE_LIST = one_of(api.CLOSES)
local PROTOS, PROTO_LIST = one_of(api.PROTOS)

-- The modes that can probe UDP. A connect probe (modes connect and any)
-- cannot: UDP has no handshake whose answer it could observe, and the
-- datagram it would send would reach the server.
local UDP_MODES = one_of(api.UDP_MODES)

-- The defaults, read once here (args.check runs on every check).
local declared = api.option
local CHECK_TIMEOUT = declared("check", "timeout_ms").default
local WAIT_TIMEOUT = declared("wait", "timeout_ms").default
local ATTEMPT_MS = declared("wait", "attempt_ms").default
local YIELD = declared("wait", "yield").default
local MODE, UDP_MODE = declared("check", "mode").default, declared("check", "mode").default_udp
local CLOSE, PROTO = declared("check", "close").default, declared("check", "proto").default
local UDP_WHY = "mode must be bind or listen with proto udp (a connect probe has no " ..
  "handshake to observe over UDP, and its datagram would reach the server)"

function M.proto(fname, argn, v)
  if v == nil then return PROTO end
  if not PROTOS[v] then fail(fname, argn, "proto must be one of " .. PROTO_LIST, v) end
  return v
end

--- The mode for proto (default "tcp"). Omitted, it is "connect" for TCP
-- and "bind" for UDP: the one probe of a UDP port that works everywhere
-- (luv without the C core, systems without listen mode).
function M.mode(fname, argn, v, proto)
  if v == nil then return proto == "udp" and UDP_MODE or MODE end
  if not MODES[v] then fail(fname, argn, "mode must be one of " .. MODE_LIST, v) end
  if proto == "udp" and not UDP_MODES[v] then fail(fname, argn, UDP_WHY, v) end
  return v
end

function M.close(fname, argn, v)
  if v == nil then return CLOSE end
  if not CLOSES[v] then fail(fname, argn, "close must be one of " .. CLOSE_LIST, v) end
  return v
end

function M.ports(fname, argn, v)
  if type(v) ~= "table" or #v == 0 then
    fail(fname, argn, "ports must be a non-empty list of ports", v)
  end
  local list = {}
  for i = 1, #v do
    list[i] = M.port(fname, argn, v[i], "ports[" .. i .. "]")
  end
  return list
end

-- The option names of tcp-port-used (Node), so that code ported from it
-- gets a pointer instead of a bare "unknown option".
local NODE_NAMES = { retryTimeMs = "retry_ms", timeOutMs = "timeout_ms", inUse = "in_use" }

--- Raises for a key of opts that allowed lacks. Returns whether a key of
-- readiness (see READY_KEYS) was given, from the same pass over the keys.
function M.known(fname, argn, opts, allowed)
  local readiness = false
  for k in next, opts do
    local a = allowed[k]
    if not a then
      local hint = NODE_NAMES[k] and (" (did you mean '" .. NODE_NAMES[k] .. "'?)") or ""
      raise(fname, argn, string_format("unknown option '%s'%s", tostring(k), hint), 5)
    end
    if a == "ready" then readiness = true end
  end
  return readiness
end

local KINDS, KIND_LIST = one_of(api.READY_KINDS)
-- What each readiness option needs, and the longest string it takes.
local OPTION_OF = { path = "http", status = "http", user = "postgres", database = "postgres" }
local MAX_PATH, MAX_NAME = 8192, 1024

local function a_string(fname, v, name, max, level)
  if type(v) ~= "string" or #v == 0 or #v > max or find(v, "\0", 1, true) then
    fail(fname, 1, name .. " must be a string of 1 to " .. max .. " bytes without NUL", v, level)
  end
  return v
end

-- status: a number, a list of numbers, or a class ("2xx"), normalized to
-- the set or the range ready/http.lua accepts.
local function status_option(fname, v)
  if type(v) == "string" then
    local d = v:match("^([1-5])[xX][xX]$")
    if d then return { from = d * 100, to = d * 100 + 99 } end
  elseif is_int(v, 100, 599) then
    return { [v] = true }
  elseif type(v) == "table" and #v > 0 then
    local set = {}
    for i = 1, #v do
      if not is_int(v[i], 100, 599) then
        fail(fname, 1, "status[" .. i .. "] must be an HTTP status in 100..599", v[i], 6)
      end
      set[v[i]] = true
    end
    return set
  end
  fail(fname, 1, "status must be an HTTP status in 100..599, a list of them, or a class " ..
    "such as \"2xx\"", v, 6)
end

--- The readiness options of t (ready, path, status, user, database, unix)
-- checked and copied into the normalized options o (whose mode is set).
function M.readiness(fname, t, o)
  local r, unix = t.ready, t.unix
  if r ~= nil and type(r) ~= "function" and not KINDS[r] then
    fail(fname, 1, "ready must be one of " .. KIND_LIST .. " or a function", r)
  end
  if unix ~= nil then
    a_string(fname, unix, "unix", MAX_NAME, 6)
    if t.host ~= nil then fail(fname, 1, "unix excludes host: give one of them", unix) end
    if t.port ~= nil or t.ports ~= nil then
      fail(fname, 1, "unix excludes port and ports: give one of them", unix)
    end
  end
  if (r ~= nil or unix ~= nil) and o.proto == "udp" then
    fail(fname, 1, "proto must be \"tcp\" with " .. (r ~= nil and "ready" or "unix"), o.proto)
  end
  if (r ~= nil or unix ~= nil) and o.mode ~= "connect" then
    fail(fname, 1, "mode must be \"connect\" with " .. (r ~= nil and "ready" or "unix"), o.mode)
  end
  local path, status, user, database = t.path, t.status, t.user, t.database
  if (path ~= nil or status ~= nil) and r ~= "http"
      or (user ~= nil or database ~= nil) and r ~= "postgres" then
    for k, kind in pairs(OPTION_OF) do
      if t[k] ~= nil and r ~= kind then
        fail(fname, 1, k .. " needs ready = \"" .. kind .. "\"", t[k])
      end
    end
  end
  if path ~= nil then
    a_string(fname, path, "path", MAX_PATH, 6)
    -- a fragment ("#frag") is the client's alone and never sent: a path
    -- that holds one is refused, not cut, so that no caller is surprised
    if path:sub(1, 1) ~= "/" or find(path, "[%c #]") then
      fail(fname, 1, "path must start with \"/\" and hold no spaces, control characters or " ..
        "\"#\" (a fragment is never sent)", path)
    end
  end
  o.ready, o.unix, o.path = r, unix, path
  o.status = status ~= nil and status_option(fname, status) or nil
  o.user = user ~= nil and a_string(fname, user, "user", MAX_NAME, 6) or nil
  o.database = database ~= nil and a_string(fname, database, "database", MAX_NAME, 6) or nil
  return o
end

-- The keys of every options table, by the function that takes it (the
-- adapters' check, waits and on_used/on_free take the same), as api.lua
-- declares them. Readiness keys (ready, path, status, user, database,
-- unix) are "ready".
M.OPTIONS = {}
for set, decl in pairs(api.options) do
  local keys = {}
  for _, o in ipairs(decl[1]) do keys[o.name] = o.ready and "ready" or true end
  M.OPTIONS[set] = keys
end
local READY_CHECK_KEYS, WAIT_KEYS = M.OPTIONS.check, M.OPTIONS.wait
-- A check's plain keys: any other sends it down the readiness path.
local CHECK_KEYS = {}
for k, v in pairs(READY_CHECK_KEYS) do
  if v == true then CHECK_KEYS[k] = true end
end

-- The last port and host that passed the checks of M.check: a caller
-- that probes the same one again skips them (a bind probe costs a few
-- microseconds; each check a Lua program makes is a C call, and they
-- came to a quarter of it). Both are plain values, so equal means valid.
local valid_port, valid_host = 80, "localhost"

-- The first key of t that set lacks, nil when none, false when t is not
-- a table: one C call where the core has it (type() and a call of `next`
-- per key cost more than the bind syscall).
local function stray_key(t, set)
  if type(t) ~= "table" then return false end
  for k in next, t do
    if not set[k] then return k end
  end
end
do
  local ok, core = pcall(require, "tcp_port_used.core")
  if ok and type(core) == "table" and core.stray_key then stray_key = core.stray_key end
end

--- check(port [, host]) or check{...}: the normalized options, in the
-- table `into` when given (the core's check reuses one: a check costs
-- about what its system calls cost, and building a table each time cost
-- a tenth of a bind probe), else in a new one.
function M.check(fname, a, b, into)
  local o = into or {}
  local port, host, timeout, mode, close, proto
  local stray = stray_key(a, CHECK_KEYS)
  if stray ~= false then
    local readiness = false
    if stray ~= nil then readiness = M.known(fname, 1, a, READY_CHECK_KEYS) end
    port, host, timeout, mode, close, proto = a.port, a.host, a.timeout_ms, a.mode, a.close, a.proto
    -- the usual case is checked inline; the checkers word what fails
    if host ~= nil and host ~= valid_host then
      if type(host) ~= "string" or #host == 0 or #host > 1024 or find(host, "\0", 1, true) then
        M.host(fname, 1, host)
      end
      valid_host = host
    end
    if timeout == nil then
      timeout = CHECK_TIMEOUT
    elseif not is_ms(timeout) then
      M.ms(fname, 1, timeout, "timeout_ms")
    end
    if proto == nil then proto = PROTO elseif not PROTOS[proto] then M.proto(fname, 1, proto) end
    if mode == nil then
      mode = proto == "udp" and UDP_MODE or MODE
    elseif not MODES[mode] or proto == "udp" and not UDP_MODES[mode] then
      M.mode(fname, 1, mode, proto)
    end
    if close == nil then close = CLOSE elseif not CLOSES[close] then M.close(fname, 1, close) end
    if readiness then
      -- a table of its own: `into` is reused by plain checks, which must
      -- not see readiness options
      o = { host = host, timeout_ms = timeout, mode = mode, close = close, proto = proto }
      if a.unix == nil then o.port = M.port(fname, 1, port) end
      M.readiness(fname, a, o)
      return o
    end
  else
    host = b
    if host ~= nil and host ~= valid_host then valid_host = M.host(fname, 2, host) end
    port, timeout, mode, close, proto = a, CHECK_TIMEOUT, MODE, CLOSE, PROTO
  end
  if port ~= valid_port then
    if not (type(port) == "number" and port % 1 == 0 and port >= 1 and port <= 65535) then
      M.port(fname, 1, port)
    end
    valid_port = port
  end
  o.port, o.host, o.timeout_ms, o.mode, o.close, o.proto = port, host, timeout, mode, close, proto
  return o
end

--- explain(o): the options of explain(port [, host]) or explain{...},
-- as check normalized them (a probe is a check), less unix: a
-- Unix-domain socket has no port to explain. Called by the public
-- function after args.check, so that both name its caller.
function M.explain(fname, o)
  if o.unix then fail(fname, 1, "unix is not explained (explain a host and port)", o.unix, 4) end
  return o
end

--- owner(port [, host]) or owner{ port =, host =, proto = }: returns
-- port, host, proto.
function M.owner(fname, a, b)
  if type(a) == "table" then
    M.known(fname, 1, a, M.OPTIONS.owner)
    return M.port(fname, 1, a.port), M.host(fname, 1, a.host), M.proto(fname, 1, a.proto)
  end
  return M.port(fname, 1, a), M.host(fname, 2, b), PROTO
end

--- Normalizes the options table of a wait; `in_use` is forced by the
-- named waits and required by wait_for_status. A wait for a Unix-domain
-- socket has its path as its one "port".
function M.wait_table(fname, t, in_use)
  local readiness = M.known(fname, 1, t, WAIT_KEYS)
  local o = {}
  if readiness and t.unix ~= nil then
    o.ports = { t.unix }
  elseif t.ports ~= nil then
    if t.port ~= nil then
      raise(fname, 1, "give port or ports, not both", 4)
    end
    o.ports = M.ports(fname, 1, t.ports)
  else
    o.ports = { M.port(fname, 1, t.port) }
  end
  o.host = M.host(fname, 1, t.host)
  if in_use == nil then
    o.in_use = M.boolean(fname, 1, t.in_use, "in_use")
  else
    if t.in_use ~= nil and t.in_use ~= in_use then
      fail(fname, 1, "in_use must be " .. tostring(in_use) .. " or nil here", t.in_use, 4)
    end
    o.in_use = in_use
  end
  o.retry_ms = M.ms(fname, 1, t.retry_ms, "retry_ms", nil)
  o.timeout_ms = M.ms(fname, 1, t.timeout_ms, "timeout_ms", WAIT_TIMEOUT)
  o.attempt_ms = M.ms(fname, 1, t.attempt_ms, "attempt_ms", ATTEMPT_MS)
  o.proto = M.proto(fname, 1, t.proto)
  o.mode = M.mode(fname, 1, t.mode, o.proto)
  o.close = M.close(fname, 1, t.close)
  o.sleep = M.func(fname, 1, t.sleep, "sleep")
  o.on_retry = M.func(fname, 1, t.on_retry, "on_retry")
  o.yield = M.boolean(fname, 1, t.yield, "yield", YIELD)
  if readiness then M.readiness(fname, t, o) end
  return o
end

--- Positional waits: (port, retry, timeout), (port, host, retry, timeout)
-- or (port, host, in_use, retry, timeout) depending on which of host and
-- in_use the function takes positionally.
function M.wait_positional(fname, in_use, takes_host, takes_in_use, ...)
  local args, n = { ... }, 1
  local o = { attempt_ms = ATTEMPT_MS, mode = MODE, close = CLOSE, yield = YIELD, proto = PROTO }
  o.ports = { M.port(fname, n, args[n]) }
  n = n + 1
  if takes_host then
    o.host = M.host(fname, n, args[n])
    n = n + 1
  end
  if takes_in_use then
    o.in_use = M.boolean(fname, n, args[n], "in_use")
    n = n + 1
  else
    o.in_use = in_use
  end
  o.retry_ms = M.ms(fname, n, args[n], "retry_ms", nil)
  o.timeout_ms = M.ms(fname, n + 1, args[n + 1], "timeout_ms", WAIT_TIMEOUT)
  return o
end

-- The five waits of tcp-port-used: the state each waits for (nil: the
-- caller says), and whether host and in_use come positionally.
local WAITS = {
  { "wait_until_used", true, false, false },
  { "wait_until_free", false, false, false },
  { "wait_until_used_on_host", true, true, false },
  { "wait_until_free_on_host", false, true, false },
  { "wait_for_status", nil, true, true },
}

--- Defines the five waits on the module table mod, for the core and each
-- adapter alike: each takes its positional form or one options table and
-- hands the normalized options to run(fname, o).
function M.define_waits(mod, run)
  for _, w in ipairs(WAITS) do
    local fname, in_use, takes_host, takes_in_use = w[1], w[2], w[3], w[4]
    mod[fname] = function(a, ...)
      local o
      if type(a) == "table" then
        o = M.wait_table(fname, a, in_use)
      else
        o = M.wait_positional(fname, in_use, takes_host, takes_in_use, a, ...)
      end
      return run(fname, o)
    end
  end
end

return M
