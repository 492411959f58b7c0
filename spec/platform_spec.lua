-- The platform layer (csrc/platform.h) on every build, and what the
-- portable build answers: `make test-portable` runs the whole suite against
-- the core built with -DTPU_PORTABLE, every Linux-only path compiled out,
-- as it would build on macOS or a BSD.
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local listen = require "tcp_port_used.listen"
local H = require "helpers"

-- Whether bit (a power of two) is set in n, without 5.3's operators.
local function has_bit(n, bit)
  return math.floor(n / bit) % 2 == 1
end

-- The file status flags of descriptor fd of this process (octal in
-- /proc/self/fdinfo; close-on-exec shows there as O_CLOEXEC).
local function fd_flags(fd)
  local f = assert(io.open("/proc/self/fdinfo/" .. fd))
  local s = f:read("*a")
  f:close()
  return assert(tonumber(s:match("flags:%s*(%d+)"), 8), s)
end
local O_NONBLOCK, O_CLOEXEC = 2048, 524288 -- 04000, 02000000 (Linux)

describe("the platform layer", function()
  it("gives every probe a non-blocking, close-on-exec socket", function()
    local b = H.full_backlog()
    local p = core.start("127.0.0.1", b.port)
    assert.equals("userdata", type(p), "a connect to a full backlog must be pending")
    local fds = p:fds()
    assert.equals(1, #fds)
    local flags = fd_flags(fds[1])
    assert.is_true(has_bit(flags, O_NONBLOCK), string.format("flags %o", flags))
    assert.is_true(has_bit(flags, O_CLOEXEC), string.format("flags %o", flags))
    p:close()
    b.close()
  end)

  -- What the core asks of the kernel, as strace sees it: one refused
  -- connect, a readiness stream that connects and sends, and a sleep.
  it("takes the paths platform.h chose (strace)", function()
    local _, rc = H.run("strace -o /dev/null true 2>/dev/null")
    if rc ~= 0 then
      pending("strace is missing or may not trace here")
      return
    end
    local file = os.tmpname()
    -- (LeakSanitizer cannot run under ptrace: the asan run's child skips it)
    local out, status = H.run("ASAN_OPTIONS=detect_leaks=0 strace -f -o " .. file ..
      " -e trace=socket,connect,fcntl,poll,getsockopt,sendto,clock_nanosleep,nanosleep,write " ..
      H.lua_cmd([[
        local core, socket = require "tcp_port_used.core", require "socket"
        local r = socket.tcp()
        assert(r:bind("127.0.0.1", 0))
        local _, port = r:getsockname()
        port = tonumber(port)
        local srv = assert(socket.bind("127.0.0.1", 0))
        local _, sport = srv:getsockname()
        io.stderr:write("BEGIN\n")
        assert(core.connect("127.0.0.1", port) == false)
        local s, state = core.stream("127.0.0.1", tonumber(sport))
        assert(state == true, tostring(state))
        assert(s:send("x"))
        s:close()
        core.sleep(1)
        io.stderr:write("END\n")]]) .. " 2>&1")
    local f = io.open(file)
    local trace = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(file)
    assert.equals(0, status, out)
    trace = trace:match("BEGIN.-\n(.*)END")
    assert.is_string(trace, out)
    local _, connects = trace:gsub("connect%(", "")
    -- a write to a peer that has gone raises no SIGPIPE, on every build
    assert.matches("sendto%([^\n]*MSG_NOSIGNAL", trace)
    if H.portable then
      -- socket + fcntl, then poll and SO_ERROR; a nanosleep loop
      assert.matches("socket%(AF_INET, SOCK_STREAM, ", trace)
      assert.matches("F_SETFD, FD_CLOEXEC", trace, 1, true)
      assert.matches("O_NONBLOCK", trace, 1, true)
      assert.equals(2, connects, trace)
      assert.matches("poll%(", trace)
      assert.matches("SO_ERROR", trace, 1, true)
      assert.is_nil(trace:find("TIMER_ABSTIME", 1, true), trace)
    else
      -- the flags in socket(), the answer from a second connect(), an
      -- absolute sleep on the monotonic clock
      assert.matches("SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK", trace, 1, true)
      assert.is_nil(trace:find("fcntl(", 1, true), trace)
      assert.equals(4, connects, trace)
      assert.matches("clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME", trace, 1, true)
    end
  end)

  it("has listen mode exactly where it was built for Linux", function()
    local ok, code = core.diag_check()
    if H.portable then
      assert.are.same({ nil, "ENOTSUP" }, { ok, code })
    else
      assert.are_not.equal("ENOTSUP", code)
    end
  end)
end)

-- The trace of code run in a child of this runtime, between its BEGIN and
-- END lines on stderr; or nil where strace cannot run here.
local function traced(calls, code)
  local _, rc = H.run("strace -o /dev/null true 2>/dev/null")
  if rc ~= 0 then return nil end
  local file = os.tmpname()
  local out, status = H.run("ASAN_OPTIONS=detect_leaks=0 strace -f -o " .. file .. " -e trace=write," ..
    calls .. " " .. H.lua_cmd("io.stderr:write('BEGIN\\n') " .. code .. " io.stderr:write('END\\n')") ..
    " 2>&1")
  local trace = H.slurp(file)
  os.remove(file)
  assert.equals(0, status, out)
  return assert(trace:match("BEGIN.-\n(.*)END"), out .. trace)
end

describe("listen mode's kernel queries (strace)", function()
  if H.portable then pending(H.NO_LISTEN_MODE) return end

  it("are one netlink dump per address family for check_many of 1024 ports, no /proc", function()
    local l, r = H.listen("127.0.0.1"), H.reserve("127.0.0.1")
    local trace = traced("socket,sendto,sendmsg,openat,open", string.format([[
      local tpu = require "tcp_port_used"
      local ports = { %d, %d }
      for p = 40001, 41022 do ports[#ports + 1] = p end
      local used = assert(tpu.check_many(ports, nil, { mode = "listen" }))
      assert(used[%d] == true and used[%d] == false, "wrong answer")]], l.port, r.port, l.port, r.port))
    l.close()
    r.close()
    if not trace then pending("strace is missing or may not trace here") return end
    local _, sends = trace:gsub("sendto%(", "")
    assert.equals(2, sends, trace)
    assert.matches("sdiag_family=AF_INET6", trace, 1, true)
    assert.is_nil(trace:find("/proc/net/", 1, true), trace)
  end)

  it("share one netlink socket among the checks of a Lua state", function()
    local l = H.listen("127.0.0.1")
    local trace = traced("socket,sendto,close", string.format([[
      local tpu = require "tcp_port_used"
      for _ = 1, 20 do
        assert(tpu.check { port = %d, mode = "listen" } == true)
        assert(tpu.check { port = %d, host = "127.0.0.1", mode = "listen" } == true)
      end
      assert(#assert(tpu.check_many({ %d }, "127.0.0.1", { mode = "listen" })) == 0)]],
      l.port, l.port, l.port))
    l.close()
    if not trace then pending("strace is missing or may not trace here") return end
    local _, opened = trace:gsub("socket%(AF_NETLINK", "")
    local _, sends = trace:gsub("sendto%(", "")
    -- the first check's self-test opens a socket of its own (diag.c)
    assert.is_true(opened <= 2, trace)
    assert.is_true(sends >= 42, trace)
  end)
end)

if not H.portable then return end

describe("the portable build", function()
  local l = H.each_listener_and_refused(before_each, after_each)

  it("answers listen mode with ENOTSUP for every host form", function()
    local where = {
      [false] = "127.0.0.1:" .. l.port,
      ["127.0.0.1"] = "127.0.0.1:" .. l.port,
      ["[::1]"] = "[::1]:" .. l.port,
      localhost = "localhost:" .. l.port .. " (127.0.0.1:" .. l.port .. ")",
      ["*"] = "*:" .. l.port,
    }
    for host, at in pairs(where) do
      local ok, err, code = tpu.check { port = l.port, host = host or nil, mode = "listen" }
      assert.is_nil(ok, tostring(host))
      assert.equals("listen " .. at .. ": listen mode needs Linux (NETLINK_SOCK_DIAG or /proc/net/tcp)", err)
      assert.equals("ENOTSUP", code)
    end
  end)

  it("answers ENOTSUP whichever backend is forced", function()
    for _, backend in ipairs { "netlink", "proc" } do
      listen.backend(backend)
      local ok, err, code = tpu.check { port = l.port, host = "127.0.0.1", mode = "listen" }
      listen.backend(false)
      assert.is_nil(ok, backend)
      assert.equals("listen 127.0.0.1:" .. l.port .. ": listen mode needs Linux (NETLINK_SOCK_DIAG or /proc/net/tcp)",
        err, backend)
      assert.equals("ENOTSUP", code, backend)
    end
  end)

  it("stops a listen-mode wait at once", function()
    local t0 = core.now()
    local ok, err, code = tpu.wait_until_used { port = l.port, mode = "listen", timeout_ms = 5000 }
    assert.is_nil(ok)
    assert.matches("listen mode needs Linux", err, 1, true)
    assert.equals("ENOTSUP", code)
    ok, err, code = tpu.wait_until_free { port = l.port, mode = "listen", timeout_ms = 5000 }
    assert.is_nil(ok)
    assert.matches("listen mode needs Linux", err, 1, true)
    assert.equals("ENOTSUP", code)
    assert.is_true(core.now() - t0 < 1000)
  end)

  it("answers check_many in listen mode and owner with ENOTSUP", function()
    local ok, err, code = tpu.check_many({ l.port, l.port + 1 }, nil, { mode = "listen" })
    assert.is_nil(ok)
    assert.matches("listen mode needs Linux", err, 1, true)
    assert.equals("ENOTSUP", code)
    ok, err, code = tpu.owner(l.port)
    assert.is_nil(ok)
    assert.matches("listen mode needs Linux", err, 1, true)
    assert.equals("ENOTSUP", code)
    ok, err, code = tpu.owner(l.port, "127.0.0.1")
    assert.is_nil(ok)
    assert.matches("listen mode needs Linux", err, 1, true)
    assert.equals("ENOTSUP", code)
  end)

  it("answers UDP's listen mode and owner with ENOTSUP too; UDP's bind mode works", function()
    local u = H.udp("127.0.0.1")
    local ok, err, code = tpu.check { port = u.port, proto = "udp", mode = "listen" }
    assert.is_nil(ok)
    assert.equals("listen 127.0.0.1:" .. u.port .. ": listen mode needs Linux (NETLINK_SOCK_DIAG or /proc/net/tcp)",
      err)
    assert.equals("ENOTSUP", code)
    ok, err, code = tpu.check_many({ u.port }, nil, { proto = "udp", mode = "listen" })
    assert.is_nil(ok)
    assert.matches("listen mode needs Linux", err, 1, true)
    assert.equals("ENOTSUP", code)
    ok, err, code = tpu.owner { port = u.port, proto = "udp" }
    assert.is_nil(ok)
    assert.matches("listen mode needs Linux", err, 1, true)
    assert.equals("ENOTSUP", code)
    assert.is_true(tpu.check { port = u.port, host = "127.0.0.1", proto = "udp" })
    u.close()
  end)

  it("keeps the core's Linux-only functions, each answering nil, ENOTSUP", function()
    local calls = {
      diag_check = {},
      listen_exact = { "127.0.0.1", l.port },
      listeners = { 1, 65535 },
      listen_parse = { "", 1, true },
      socket_holders = { {} },
    }
    for name, a in pairs(calls) do
      assert.are.same({ nil, "ENOTSUP" }, { core[name]((table.unpack or unpack)(a)) }, name) -- luacheck: ignore 143
    end
    -- what listen mode shares with the other modes still works
    assert.are.same({ true, "127.0.0.1" }, { core.local_addresses("127.0.0.1") })
  end)
end)
