--- The hostile-input table (issue 17): one list of inputs that every
-- transport must answer alike (spec/differential_spec.lua runs it through
-- the core module, tcp_port_used.uv with and without the C core and
-- tcp_port_used.ngx in nginx) and that the CLI must answer as the core
-- does (spec/hostile_spec.lua). Plain data, loaded on every runtime.
local I = {}

--- Hosts that read as IPv4 but are not written canonically, and why
-- (the words of "resolve HOST: not a canonical IPv4 address (WHY)").
I.LEGACY = {
  { "127.0.0.010", "leading zero" },  -- octal to inet_aton: 127.0.0.8
  { "127.0.0.08", "leading zero" },
  { "127.8", "2 parts, not 4" },      -- 127.0.0.8 to inet_aton
  { "0x7f.0.0.8", "hexadecimal part" },
  { "0X7F.0.0.1", "hexadecimal part" },
  { "2130706440", "1 part, not 4" },  -- 127.0.0.8 as one number
  { "127.0.0.1.", "empty part" },
  { "[127.0.0.010]", "leading zero" },
  { "999.1.1.1", "part above 255" },
}

--- Other literals that are no address: EAI_NONAME, never a lookup.
I.MALFORMED = { "::ffff:127.0.0.010", "1::2::3" }

--- Rows for T.table_run's extra (port: a fixture name; modes: the modes
-- this build has). Every row is answered without waiting on a timeout.
-- raises: words the core's argument error must hold (every transport is
-- held to the core's outcome).
function I.rows(modes)
  local rows = {}
  local function add(label, port, opts, fn, raises)
    rows[#rows + 1] = { fn = fn, port = port, opts = opts, label = label, raises = raises }
  end
  local RANGE = "must be a number of milliseconds in 0..1e12, got "
  local hosts = {}
  for _, l in ipairs(I.LEGACY) do hosts[#hosts + 1] = l[1] end
  for _, h in ipairs(I.MALFORMED) do hosts[#hosts + 1] = h end
  for _, h in ipairs(hosts) do
    for _, m in ipairs(modes) do
      add(string.format("legacy host %q mode=%s", h, m), "open4", { host = h, mode = m })
    end
    add(string.format("legacy host %q proto=udp", h), "udp4", { host = h, proto = "udp" })
    add(string.format("legacy host %q ready=redis", h), "open4", { host = h, ready = "redis" })
    add(string.format("legacy host %q", h), "open4",
      { host = h, timeout_ms = 0 }, "wait_until_free")
  end
  -- times: the core's range is 0..1e12 ms; outside it, an argument error
  -- naming the option, never one from inside the core
  for _, t in ipairs { 1e13, 2e12, 1 / 0, -1 / 0, 0 / 0, -1, -1e-300, "5" } do
    local shown = type(t) == "number" and string.format("%g", t) or string.format("%q", t)
    add("timeout_ms=" .. shown, "open4", { timeout_ms = t }, nil, "timeout_ms " .. RANGE)
    add("bind timeout_ms=" .. shown, "open4", { timeout_ms = t, mode = "bind" }, nil,
      "timeout_ms " .. RANGE)
    add("timeout_ms=" .. shown, "open4", { timeout_ms = t }, "wait_until_used",
      "timeout_ms " .. RANGE)
    add("retry_ms=" .. shown, "open4", { retry_ms = t }, "wait_until_used",
      "retry_ms " .. RANGE)
    add("attempt_ms=" .. shown, "open4", { attempt_ms = t }, "wait_until_used",
      "attempt_ms " .. RANGE)
    add("ready=redis timeout_ms=" .. shown, "open4", { ready = "redis", timeout_ms = t }, nil,
      "timeout_ms " .. RANGE)
  end
  -- the edges of the range, and negative zero, are times like any other
  add("bind timeout_ms=0", "unbound", { timeout_ms = 0, mode = "bind" })
  add("bind timeout_ms=-0.0", "unbound", { timeout_ms = -0.0, mode = "bind" })
  add("bind timeout_ms=1e12", "unbound", { timeout_ms = 1e12, mode = "bind" })
  add("timeout_ms=1e12", "open4", { timeout_ms = 1e12 }, "wait_until_used")
  add("retry_ms=0", "open4", { retry_ms = 0, timeout_ms = 5000 }, "wait_until_used")
  add("retry_ms=-0.0", "open4", { retry_ms = -0.0, timeout_ms = 5000 },
    "wait_until_used")
  add("retry_ms=0 times out", "open4", { retry_ms = 0, timeout_ms = 30 },
    "wait_until_free")
  -- ports: negative zero is 0
  add("port=-0.0", -0.0, {}, nil, "port must be an integer in 1..65535, got 0")
  add("port=2^53", 2 ^ 53, {}, nil, "port must be an integer in 1..65535, got 9.007199254741e+15")
  -- NULs and fragments
  add("host \"127.0.0.1\\0\"", "open4", { host = "127.0.0.1\0" }, nil, "host must not contain a NUL")
  add("host \"\\0127.0.0.1\"", "open4", { host = "\0" .. "127.0.0.1" }, nil, "host must not contain a NUL")
  add("ready \"redis\\0\"", "open4", { ready = "redis\0" }, nil, "ready must be one of")
  add("path with a NUL", "open4", { ready = "http", path = "/a\0b" }, nil, "path must be a string")
  add("path with a fragment", "open4", { ready = "http", path = "/x?y=1#frag" }, nil,
    "(a fragment is never sent)")
  add("user with a NUL", "open4", { ready = "postgres", user = "a\0b" }, nil, "user must be a string")
  return rows
end

return I
