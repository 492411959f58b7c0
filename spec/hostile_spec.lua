-- Hostile input for every public function and for the CLI: each bad value
-- raises an error that names the function and the argument (the CLI: exit
-- 2 and a message), none crashes and none is answered as if it were valid.
local tpu = require "tcp_port_used"
local H = require "helpers"
local I = require "hostile_inputs"

local nan, inf = 0 / 0, math.huge
local huge_host = ("h"):rep(10 * 1024 * 1024)

local BAD_PORTS = { 0, -1, 65536, 80.5, -0.5, "80", nan, inf, -inf, true, false, {},
                    function() end, coroutine.create(function() end) }
local BAD_HOSTS = { 1, true, {}, "", huge_host, "a\0b", "\0", "127.0.0.1\0evil" }
local BAD_TIMES = { -1, -inf, nan, inf, "5", true, {}, 1e13, 1e12 + 1, -1e-300 }

local function raises(fname, what, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, fname .. " accepted a bad " .. what)
  assert.is_string(err)
  assert.matches("bad argument #%d+ to '" .. fname .. "' %(", err)
  assert.matches(what, err, 1, true)
  assert.is_true(#err < 400, "an error message of " .. #err .. " bytes")
end

-- Each public function with a way to pass it a port, a host and a time.
local FUNCS = {
  { "check", function(p) return tpu.check(p) end,
    function(h) return tpu.check(80, h) end,
    function(t) return tpu.check { port = 80, timeout_ms = t } end },
  { "wait_until_used", function(p) return tpu.wait_until_used(p) end,
    function(h) return tpu.wait_until_used { port = 80, host = h } end,
    function(t) return tpu.wait_until_used(80, t) end },
  { "wait_until_free", function(p) return tpu.wait_until_free(p, 10, 10) end,
    function(h) return tpu.wait_until_free { port = 80, host = h } end,
    function(t) return tpu.wait_until_free(80, 10, t) end },
  { "wait_until_used_on_host", function(p) return tpu.wait_until_used_on_host(p, "127.0.0.1") end,
    function(h) return tpu.wait_until_used_on_host(80, h) end,
    function(t) return tpu.wait_until_used_on_host { port = 80, attempt_ms = t } end },
  { "wait_until_free_on_host", function(p) return tpu.wait_until_free_on_host(p, "127.0.0.1") end,
    function(h) return tpu.wait_until_free_on_host(80, h) end,
    function(t) return tpu.wait_until_free_on_host(80, "127.0.0.1", t) end },
  { "wait_for_status", function(p) return tpu.wait_for_status(p, nil, true) end,
    function(h) return tpu.wait_for_status(80, h, true) end,
    function(t) return tpu.wait_for_status(80, nil, false, 10, t) end },
  { "check_many", function(p) return tpu.check_many { 80, p } end,
    function(h) return tpu.check_many({ 80 }, h) end,
    function(t) return tpu.check_many({ 80 }, nil, { timeout_ms = t }) end },
  { "find_free", function(p) return tpu.find_free { from = p } end,
    function(h) return tpu.find_free { host = h } end, nil },
  { "owner", function(p) return tpu.owner(p) end,
    function(h) return tpu.owner(80, h) end, nil },
}

describe("hostile input", function()
  for _, f in ipairs(FUNCS) do
    local fname, with_port, with_host, with_time = f[1], f[2], f[3], f[4]

    it(fname .. " rejects every bad port", function()
      for _, v in ipairs(BAD_PORTS) do
        raises(fname, "must be an integer in 1..65535", with_port, v)
      end
    end)

    it(fname .. " rejects every bad host, 10 MB long and NUL-laden ones included", function()
      for _, v in ipairs(BAD_HOSTS) do
        raises(fname, "host must", with_host, v)
      end
    end)

    if with_time then
      it(fname .. " rejects negative, NaN, infinite and non-number times", function()
        for _, v in ipairs(BAD_TIMES) do
          raises(fname, "must be a number of milliseconds in 0..1e12", with_time, v)
        end
      end)
    end
  end

  it("rejects unknown options everywhere an options table is taken", function()
    raises("check", "unknown option 'prot'", tpu.check, { port = 80, prot = 1 })
    raises("wait_until_used", "unknown option 'retry'", tpu.wait_until_used, { port = 80, retry = 1 })
    raises("check_many", "unknown option 'bogus'", tpu.check_many, { 80 }, nil, { bogus = 1 })
    raises("find_free", "unknown option 'bogus'", tpu.find_free, { bogus = 1 })
    raises("check", "unknown option '1'", tpu.check, { 80, port = 80 })
  end)

  it("rejects every bad proto everywhere a proto is taken", function()
    for _, v in ipairs { "", "UDP", "udp\0", "tcp ", 17, true, {}, ("u"):rep(1e6) } do
      raises("check", "proto must be one of tcp, udp", tpu.check, { port = 80, proto = v })
      raises("wait_until_free", "proto must be one of tcp, udp", tpu.wait_until_free, { port = 80, proto = v })
      raises("check_many", "proto must be one of tcp, udp", tpu.check_many, { 80 }, nil, { proto = v })
      raises("find_free", "proto must be one of tcp, udp", tpu.find_free, { proto = v })
      raises("owner", "proto must be one of tcp, udp", tpu.owner, { port = 80, proto = v })
    end
  end)

  it("answers IPv6 hosts with zone ids with an answer or an error, never a crash", function()
    if not H.can_unshare() then
      pending("no network namespaces here (a malformed host could reach the resolver)")
      return
    end
    local out = H.lua_in_netns([==[
      local tpu = require "tcp_port_used"
      for _, h in ipairs { "fe80::1%lo", "[fe80::1%lo]", "::1%lo", "fe80::1%nonexistent", "fe80::1%",
                           "[::1", "::1]", "[[::1]]", "1::2::3", "::ffff:127.0.0.1", "%lo" } do
        for _, mode in ipairs { "connect", "bind", "any", "listen", "udp bind", "udp listen" } do
          local proto, m = mode:match("^(udp) (%a+)$")
          local r = { tpu.check { port = 80, host = h, mode = m or mode, proto = proto, timeout_ms = 100 } }
          local ok = type(r[1]) == "boolean" or (r[1] == nil and type(r[2]) == "string"
            and type(r[3]) == "string")
          print(ok and "ok" or ("bad " .. h .. " " .. mode .. " " .. tostring(r[1]) .. " " .. tostring(r[2])))
        end
      end]==])
    assert.is_nil(out:find("bad ", 1, true), out)
    local n = select(2, out:gsub("ok\n", ""))
    assert.equals(66, n, out)
  end)

  -- issue 17: a legacy IPv4 form is never an address, whatever takes it
  it("answers every legacy IPv4 literal in check_many, find_free and owner as check does", function()
    local l = H.listen("127.0.0.1")
    local modes = { "connect", "bind", "any" }
    if not H.portable then modes[#modes + 1] = "listen" end
    for _, legacy in ipairs(I.LEGACY) do
      local h = legacy[1]
      local _, msg, code = tpu.check(l.port, h)
      assert.equals("EAI_NONAME", code, h)
      assert.equals("resolve " .. h .. ": not a canonical IPv4 address (" .. legacy[2] .. ")", msg)
      for _, m in ipairs(modes) do
        assert.same({ nil, msg, code }, { tpu.check_many({ l.port }, h, { mode = m }) }, h .. " " .. m)
      end
      assert.same({ nil, msg, code }, { tpu.check_many({ l.port }, h, { proto = "udp" }) }, h)
      local r = { tpu.find_free { host = h } }
      assert.same({ nil, msg, code }, { r[1], r[2], r[3] }, h)
      r = { tpu.find_free { host = h, from = 40000, to = 40001 } }
      assert.same({ nil, msg, code }, { r[1], r[2], r[3] }, h)
      if not H.portable then
        assert.same({ nil, msg, code }, { tpu.owner(l.port, h) }, h)
      end
    end
    l.close()
  end)

  it("the C core called directly takes no legacy IPv4 literal either", function()
    local core = require "tcp_port_used.core"
    for _, legacy in ipairs(I.LEGACY) do
      local h = legacy[1]
      assert.same({ nil, "EAI_NONAME" }, { core.resolve(h) }, h)
      assert.same({ nil, "EAI_NONAME" }, { core.connect(h, 80, 100) }, h)
      assert.same({ nil, "EAI_NONAME" }, { core.start(h, 80) }, h)
      assert.same({ nil, "EAI_NONAME" }, { core.bind(h, 80) }, h)
      assert.same({ nil, "EAI_NONAME" }, { core.bind(h, 80, "udp") }, h)
      assert.same({ nil, "EAI_NONAME" }, { core.many(h, { 80 }) }, h)
      assert.same({ nil, "EAI_NONAME" }, { core.bind_port0(h) }, h)
      assert.same({ nil, "EAI_NONAME" }, { core.local_addresses(h) }, h)
      -- a stream takes address literals only: a legacy form is none
      assert.has_error(function() core.stream(h, 80) end)
    end
  end)

  it("never answers a malformed literal as free", function()
    for _, h in ipairs { "[::1", "1::2::3", "256.1.1.1" } do
      local r = tpu.check(80, h)
      assert.is_nil(r, h)
    end
  end)

  describe("the CLI", function()
    local ENV = string.format("LUA_PATH=%s LUA_CPATH=%s ",
      H.quote(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;;"), H.quote(H.cpath .. ";;"))
    local CLI = ENV .. H.lua_exec() .. " " .. H.quote(H.root .. "/bin/tcp-port-used")

    local function cli(argstr)
      local errfile = os.tmpname()
      local out, rc = H.run(CLI .. " " .. argstr .. " 2>" .. errfile)
      local f = io.open(errfile)
      local err = f:read("*a")
      f:close()
      os.remove(errfile)
      return out, err, rc
    end

    it("exits 2 with a message on every bad argument", function()
      local long = H.quote(("h"):rep(100 * 1024) .. ":80")
      for _, argstr in ipairs {
        "check 0", "check 65536", "check 80.5", "check -1", "check ''", "check x",
        "check '[::1'", "check '::1:80'", "check " .. long, "check 80 " .. H.quote(("h"):rep(2000)),
        "wait-used 80 --timeout abc", "wait-used 80 --timeout -5", "wait-used 80 --timeout nan",
        "wait-used 80 --timeout inf", "wait-used 80 --retry 1e999", "wait-used 80 --mode ping",
        "wait-used", "check", "bogus", "--bogus", "check 80 --timeout", "find-free --from 0",
        "find-free --from 70000", "who 0", "wait-used 80 --", "check --udp 80 --mode connect",
        "wait-free --udp 80 --mode any", "who --udp 0", "check --udp",
        "check " .. H.quote("http://" .. ("h"):rep(100 * 1024) .. "/"), "check postgres://",
        "check unix:", "check 'redis://[::1'", "check 'http://a/' --status " .. ("9"):rep(5000),
        "check 80 --ready " .. ("x"):rep(5000), "check --udp redis://127.0.0.1:1",
      } do
        local out, err, rc = cli(argstr)
        assert.equals(2, rc, argstr .. " -> " .. tostring(rc) .. " " .. out .. err)
        assert.matches("^tcp%-port%-used: ", err, nil, argstr)
        assert.is_true(#err < 600, argstr .. ": " .. #err .. " bytes of error")
      end
    end)

    -- The hostile-input table (spec/hostile_inputs.lua) through the CLI:
    -- the core's answer and words, exit 2, no position in the code.
    local function no_position(argstr, text)
      assert.is_nil(text:find("%.lua:%d+:"), argstr .. ": " .. text)
    end

    it("answers every legacy IPv4 literal as the core does, in every command", function()
      local l = H.listen("127.0.0.1")
      for _, legacy in ipairs(I.LEGACY) do
        local host = legacy[1]:match("^%[(.*)%]$") or legacy[1]
        local _, msg, code = tpu.check(l.port, host)
        assert.equals("EAI_NONAME", code, host)
        assert.equals("resolve " .. host .. ": not a canonical IPv4 address (" .. legacy[2] .. ")", msg)
        for _, argstr in ipairs {
          "check " .. H.quote(host .. ":" .. l.port), "check " .. l.port .. " " .. H.quote(host),
          "check " .. H.quote(host .. ":" .. l.port) .. " --mode bind",
          "check " .. H.quote(host .. ":" .. l.port) .. " --mode any",
          "check " .. H.quote(host .. ":" .. l.port) .. " --mode " .. H.quiet_mode,
          "check " .. H.quote("redis://" .. host .. ":" .. l.port),
          "check --udp " .. H.quote(host .. ":" .. l.port),
          "find-free " .. H.quote(host), "find-free " .. H.quote(host) .. " --from 2000 --to 2001",
        } do
          local out, err, rc = cli(argstr)
          assert.equals(2, rc, argstr .. " -> " .. out .. err)
          assert.equals("", out, argstr)
          assert.equals("tcp-port-used: " .. msg .. "\n", err, argstr)
        end
        if not H.portable then
          local _, err, rc = cli("who " .. l.port .. " " .. H.quote(host))
          assert.equals(2, rc, err)
          assert.equals("tcp-port-used: " .. msg .. "\n", err)
        end
        local _, err, rc = cli("wait-used " .. H.quote(host .. ":" .. l.port) .. " --timeout 0")
        assert.equals(1, rc, err)
        assert.truthy(err:find(msg, 1, true), err)
      end
      l.close()
    end)

    it("never shows a URL's password, in answers, waits and usage errors", function()
      local r = H.reserve("127.0.0.1")
      local at = "127.0.0.1:" .. r.port
      for _, c in ipairs {
        { "check " .. H.quote("redis://:s3cret@" .. at .. "/2"), 1, "redis://:***@" .. at .. "/2" },
        { "check " .. H.quote("redis://u:s3cret@" .. at), 1, "redis://u:***@" .. at },
        { "check " .. H.quote("postgres://app:s3cret@" .. at .. "/db"), 1, "postgres://app:***@" .. at },
        { "wait-used " .. H.quote("redis://:s3cret@" .. at) .. " --timeout 50", 1, "redis://:***@" .. at },
        { "check " .. H.quote("redis://:s3cret@[::1"), 2, "redis://:***@[::1" },
        { "check " .. H.quote("http://u:s3cret@" .. at .. "/"), 2, "http://u:***@" .. at },
        { "check " .. H.quote("tcp://u:s3cret@" .. at), 2, "tcp://u:***@" .. at },
        { "check " .. H.quote("ftp://u:s3cret@" .. at), 2, "ftp://u:***@" .. at },
        { "check " .. H.quote("redis://:s3cret@" .. at) .. " --timeout 99999999999999", 2, "--timeout" },
      } do
        local out, err, rc = cli(c[1])
        assert.equals(c[2], rc, c[1] .. " -> " .. out .. err)
        assert.is_nil((out .. err):find("s3cret", 1, true), c[1] .. " -> " .. out .. err)
        assert.truthy((out .. err):find(c[3], 1, true), c[1] .. " -> " .. out .. err)
        no_position(c[1], out .. err)
      end
      r.close()
    end)

    it("never sends a URL's fragment", function()
      local l = H.listen("127.0.0.1")
      local errfile = os.tmpname()
      local p = io.popen(CLI .. " check " .. H.quote("http://127.0.0.1:" .. l.port .. "/x?y=1#frag") ..
        " 2>" .. errfile)
      l.sock:settimeout(20)
      local c = assert(l.sock:accept())
      c:settimeout(20)
      local line = c:receive("*l")
      c:send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
      c:close()
      local out = p:read("*a")
      p:close()
      os.remove(errfile)
      assert.equals("GET /x?y=1 HTTP/1.1", line)
      assert.equals("http://127.0.0.1:" .. l.port .. "/x?y=1#frag ready\n", out)
      l.close()
    end)

    it("names --timeout and its value for a time beyond 1e12 ms; --retry 0 waits at 1 ms", function()
      local out, err, rc = cli("check 80 --timeout 99999999999999")
      local _
      assert.equals(2, rc, out .. err)
      assert.matches("--timeout must be at most 1e12 ms (about 31 years), not '99999999999999'", err, 1, true)
      _, err, rc = cli("wait-used 80 --retry 2000000000000")
      assert.equals(2, rc, err)
      assert.matches("--retry must be at most 1e12 ms", err, 1, true)
      local l = H.listen("127.0.0.1")
      _, err, rc = cli("wait-used " .. l.port .. " --retry 0 --timeout 10s")
      assert.equals(0, rc, err)
      l.close()
      local r = H.reserve("127.0.0.1")
      _, err, rc = cli("wait-used 127.0.0.1:" .. r.port .. " --retry 0 --timeout 100")
      assert.equals(1, rc, err)
      no_position("wait-used --retry 0", err)
      r.close()
    end)
  end)
end)
