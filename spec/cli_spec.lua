-- The real script, run as a subprocess on this runtime.
local core = require "tcp_port_used.core"
local H = require "helpers"

local has_ipv6 = core.ipv6()

local ENV = string.format("LUA_PATH=%s LUA_CPATH=%s ",
  H.quote(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;;"), H.quote(H.cpath .. ";;"))
local CLI = ENV .. H.lua_exec() .. " " .. H.quote(H.root .. "/bin/tcp-port-used")

--- Runs the CLI with a shell-quoted argument string; returns stdout,
-- stderr, exit status and the milliseconds it took.
local function cli(argstr)
  local errfile = os.tmpname()
  local t0 = core.now()
  local out, rc = H.run(CLI .. " " .. argstr .. " 2>" .. errfile)
  local took = core.now() - t0
  local f = io.open(errfile)
  local err = f:read("*a")
  f:close()
  os.remove(errfile)
  return out, err, rc, took
end

describe("tcp-port-used (CLI)", function()
  local l, r = H.each_listener_and_refused(before_each, after_each)

  it("--help prints usage and exit codes on stdout and exits 0", function()
    local out, err, rc = cli("--help")
    assert.equals(0, rc)
    assert.equals("", err)
    assert.matches("^Usage: tcp%-port%-used COMMAND", out)
    for _, s in ipairs { "check", "wait-used", "wait-free", "find-free", "--timeout", "--retry",
                         "--quiet", "--mode", "listen", "--udp", "who PORT", "Exit status",
                         "timed out (wait-used, wait-free)" } do
      assert.matches(s, out, 1, true)
    end
    assert.equals(require("tcp_port_used.cli_help").main, out)
  end)

  it("help CMD and CMD --help print that command's help, the generated text", function()
    local texts = require("tcp_port_used.cli_help").commands
    for _, name in ipairs { "check", "wait-used", "wait-free", "find-free", "who" } do
      local out, err, rc = cli("help " .. name)
      assert.equals(0, rc, err)
      assert.matches("^Usage: tcp%-port%-used " .. name:gsub("%-", "%%-") .. " ", out)
      assert.equals(texts[name], out)
      assert.equals(out, (cli(name .. " --help")))
      assert.equals(out, (cli(name .. " -h")))
    end
    assert.matches("--timeout TIME, -t TIME", (cli("help check")), 1, true)
    assert.not_matches("--from", (cli("help check")), 1, true)
    local _, err, rc = cli("help no-such-command")
    assert.equals(2, rc)
    assert.matches("no help on 'no-such-command'", err, 1, true)
  end)

  it("--help, help CMD and --version work without the C core", function()
    -- a checkout without build/: the CLI finds its lua/ but no core
    local dir = H.run("mktemp -d /tmp/tpu-nocore.XXXXXX"):gsub("%s+$", "")
    finally(function() os.execute("rm -rf " .. H.quote(dir)) end)
    assert(os.execute("mkdir " .. H.quote(dir .. "/bin") .. " && cp -R " .. H.quote(H.root .. "/lua") .. " " ..
      H.quote(dir) .. " && cp " .. H.quote(H.root .. "/bin/tcp-port-used") .. " " .. H.quote(dir .. "/bin")))
    local nocore = string.format("LUA_PATH=%s LUA_CPATH=%s ",
      H.quote(dir .. "/lua/?.lua;" .. dir .. "/lua/?/init.lua;;"), H.quote("/nonexistent/?.so")) ..
      H.lua_exec() .. " " .. H.quote(dir .. "/bin/tcp-port-used")
    local out, rc = H.run(nocore .. " --version 2>&1")
    assert.equals(0, rc, out)
    assert.equals("tcp-port-used " .. core._VERSION .. "\n", out)
    out, rc = H.run(nocore .. " --help 2>&1")
    assert.equals(0, rc, out)
    assert.equals(require("tcp_port_used.cli_help").main, out)
    out, rc = H.run(nocore .. " help who 2>&1")
    assert.equals(0, rc, out)
    assert.matches("^Usage: tcp%-port%-used who", out)
    -- the core is really missing there: a probe cannot run
    out, rc = H.run(nocore .. " check 1 2>&1")
    assert.equals(2, rc, out)
    assert.matches("cannot load the Lua module tcp_port_used", out, 1, true)
  end)

  it("--version prints the version and exits 0", function()
    local out, _, rc = cli("--version")
    assert.equals(0, rc)
    assert.equals("tcp-port-used " .. core._VERSION .. "\n", out)
  end)

  describe("check", function()
    it("exits 0 for a port in use and 1 for a free one", function()
      local out, err, rc = cli("check " .. l.port)
      assert.equals(0, rc, err)
      assert.equals("port " .. l.port .. " in use\n", out)
      out, err, rc = cli("check 127.0.0.1:" .. r.port)
      assert.equals(1, rc, err)
      assert.equals("127.0.0.1:" .. r.port .. " free\n", out)
      out, err, rc = cli("check " .. l.port .. " localhost")
      assert.equals(0, rc, err)
      assert.equals("localhost:" .. l.port .. " in use\n", out)
    end)

    it("takes IPv6 addresses in brackets", function()
      if not has_ipv6 then
        pending("this machine has no IPv6")
        return
      end
      local l6 = H.listen("::1")
      local out, err, rc = cli("check '[::1]:" .. l6.port .. "'")
      assert.equals(0, rc, err)
      assert.equals("[::1]:" .. l6.port .. " in use\n", out)
      out, err, rc = cli("check " .. l6.port .. " '[::1]'")
      assert.equals(0, rc, err)
      assert.equals("[::1]:" .. l6.port .. " in use\n", out)
      out, err, rc = cli("check " .. l6.port .. " 127.0.0.1")
      assert.equals(1, rc, err)
      assert.equals("127.0.0.1:" .. l6.port .. " free\n", out)
      l6.close()
    end)

    it("exits 2 with the error on stderr when the probe fails", function()
      local b = H.full_backlog()
      local out, err, rc, took = cli("check 127.0.0.1:" .. b.port .. " --timeout 200ms")
      b.close()
      assert.equals(2, rc)
      assert.equals("", out)
      assert.equals("tcp-port-used: connect 127.0.0.1:" .. b.port .. ": timed out\n", err)
      assert.is_true(took < 5000, "took " .. took)
    end)

    it("passes --mode to the library", function()
      local _, err, rc = cli("check 127.0.0.1:" .. r.port .. " --mode bind")
      assert.equals(0, rc, err)
      _, err, rc = cli("check 127.0.0.1:" .. r.port .. " --mode=connect")
      assert.equals(1, rc, err)
    end)

    it("prints nothing with --quiet; the exit status tells", function()
      local out, err, rc = cli("-q check " .. l.port)
      assert.same({ "", "", 0 }, { out, err, rc })
      out, err, rc = cli("check " .. r.port .. " 127.0.0.1 --quiet")
      assert.same({ "", "", 1 }, { out, err, rc })
    end)
  end)

  describe("wait-used", function()
    it("waits for a port that opens later, saying so on stderr", function()
      local port = H.free_port()
      local pid = H.listen_later(port, 0.3, 5)
      local out, err, rc, took = cli("wait-used 127.0.0.1:" .. port .. " --timeout 10s")
      H.kill(pid)
      assert.equals(0, rc, err)
      assert.equals("", out)
      assert.matches("^tcp%-port%-used: waiting up to 10 s for 127%.0%.0%.1:" .. port ..
        " to be in use\n", err)
      assert.matches("127.0.0.1:" .. port .. " in use after %d+ ms\n$", err)
      assert.is_true(took >= 250 and took < 9000, "took " .. took)
    end)

    it("waits for every target, on several hosts", function()
      local l2 = H.listen("127.0.0.1")
      local _, err, rc = cli(string.format("wait-used %d 127.0.0.1:%d localhost:%d --timeout 5000",
        l.port, l2.port, l.port))
      l2.close()
      assert.equals(0, rc, err)
      assert.matches("for port " .. l.port .. ", 127.0.0.1:" .. l2.port .. " and localhost:" ..
        l.port .. " to be in use", err, 1, true)
    end)

    it("exits 1 when the timeout passes, within the timeout plus a probe", function()
      local out, err, rc, took = cli("wait-used " .. r.port .. " --timeout 0.3s --retry 50")
      assert.equals(1, rc)
      assert.equals("", out)
      assert.matches("timed out after %d+ ms waiting for port " .. r.port .. " to be in use", err)
      assert.is_true(took >= 290 and took < 5000, "took " .. took)
    end)

    it("replaces itself with the command after -- once ready", function()
      -- the shell's pid is the CLI's after `exec`; the command run by the
      -- CLI prints its own pid: the same number only if the CLI exec'd it
      local out, rc = H.run("sh -c " .. H.quote("echo $$; exec env " .. CLI ..
        " wait-used " .. l.port .. " -q -- sh -c 'echo $$; exit 7'") .. " 2>&1")
      assert.equals(7, rc, out)
      local a, b = out:match("^(%d+)\n(%d+)\n$")
      assert.is_truthy(a, out)
      assert.equals(a, b)
    end)

    it("does not run the command when the wait times out", function()
      local out, _, rc = cli("wait-used " .. r.port .. " -t 100 -- echo ran")
      assert.equals(1, rc)
      assert.equals("", out)
    end)

    it("exits 2 when the command cannot be run", function()
      local _, err, rc = cli("wait-used " .. l.port .. " -- ./no-such-command-here")
      assert.equals(2, rc)
      assert.matches("exec ./no-such-command-here: ", err, 1, true)
    end)
  end)

  describe("wait-free", function()
    it("waits until a port is released", function()
      local port = H.free_port()
      local pid = H.listen_until(port, 0.3)
      local _, err, rc, took = cli("wait-free 127.0.0.1:" .. port .. " --retry 20 --timeout 10000")
      H.kill(pid)
      assert.equals(0, rc, err)
      assert.matches("127.0.0.1:" .. port .. " free after", err, 1, true)
      assert.is_true(took >= 100 and took < 9000, "took " .. took)
    end)

    it("exits 1 when the port stays in use", function()
      local _, err, rc = cli("wait-free " .. l.port .. " --timeout 200 -q")
      assert.equals(1, rc)
      assert.equals("", err)
    end)
  end)

  describe("find-free", function()
    it("prints a port that is free now", function()
      local out, err, rc = cli("find-free")
      assert.equals(0, rc, err)
      local p = tonumber(out:match("^(%d+)\n$"))
      assert.is_number(p)
      assert.is_false(require("tcp_port_used").check { port = p, mode = "bind" })
    end)

    it("searches --from --to and exits 1 when nothing there is free", function()
      local out, err, rc = cli("find-free 127.0.0.1 --from " .. l.port .. " --to " .. l.port)
      assert.equals(1, rc)
      assert.equals("", out)
      assert.matches("no free port in " .. l.port .. ".." .. l.port, err, 1, true)
      out, err, rc = cli("find-free 127.0.0.1 --quiet --from " .. l.port .. " --to " ..
        math.min(l.port + 30, 65535))
      assert.equals(0, rc, err)
      assert.is_true(tonumber(out) > l.port)
    end)
  end)

  describe("who", function()
    if H.portable then
      it("says it needs Linux and exits 2 on the portable build", function()
        local out, err, rc = cli("who " .. l.port)
        assert.equals(2, rc)
        assert.equals("", out)
        assert.matches("listen mode needs Linux", err, 1, true)
        out, err, rc = cli("check " .. l.port .. " --mode listen")
        assert.equals(2, rc)
        assert.equals("", out)
        assert.matches("listen mode needs Linux", err, 1, true)
      end)
    else
      it("names the process that listens, and exits 0", function()
        local out, _, rc = cli(tostring(l.port))
        assert.equals(2, rc, out)
        out, _, rc = cli("who " .. l.port)
        assert.equals(0, rc)
        assert.matches(l.port .. " on 127.0.0.1 is held by pid " .. H.pid() .. " %(", out)
      end)
      it("says nothing listens and exits 1 on a port held but not listening", function()
        local out, _, rc = cli("who " .. r.port)
        assert.equals(1, rc)
        assert.equals("nothing listens on " .. r.port .. "\n", out)
        out, _, rc = cli("--quiet who " .. r.port)
        assert.equals(1, rc)
        assert.equals("", out)
      end)
    end
    it("rejects a bad port with exit 2", function()
      local _, err, rc = cli("who 0")
      assert.equals(2, rc)
      assert.matches("PORT must be a port number in 1..65535", err)
    end)
  end)

  describe("--udp", function()
    it("checks a UDP port, in bind mode unless told otherwise", function()
      -- a number whose TCP port was free a moment ago (a UDP port from the
      -- kernel may be a TCP client's source port elsewhere)
      local u = H.udp("127.0.0.1", H.free_port())
      local out, err, rc = cli("check --udp 127.0.0.1:" .. u.port)
      assert.equals(0, rc, err)
      assert.equals("127.0.0.1:" .. u.port .. "/udp in use\n", out)
      if not H.portable then
        out, err, rc = cli("check --udp " .. u.port .. " --mode listen")
        assert.equals(0, rc, err)
        assert.equals("port " .. u.port .. "/udp in use\n", out)
      end
      -- the TCP port of the same number is another port
      local _
      _, err, rc = cli("check 127.0.0.1:" .. u.port .. " --mode bind")
      assert.equals(1, rc, err)
      u.close()
      out, err, rc = cli("check --udp 127.0.0.1:" .. u.port)
      assert.equals(1, rc, err)
      assert.equals("127.0.0.1:" .. u.port .. "/udp free\n", out)
    end)

    it("waits for a UDP port a child binds later, and until it is free", function()
      local port = H.free_udp_port()
      local pid = H.listen_later(port, 0.3, 0.5, "127.0.0.1", "udp")
      local out, err, rc, took = cli("wait-used --udp 127.0.0.1:" .. port .. " --timeout 10s")
      assert.equals(0, rc, err)
      assert.equals("", out)
      assert.matches("waiting up to 10 s for 127.0.0.1:" .. port .. "/udp to be in use", err, 1, true)
      assert.is_true(took >= 250 and took < 9000, "took " .. took)
      local _
      _, err, rc = cli("wait-free --udp --mode " .. H.udp_modes[#H.udp_modes] .. " 127.0.0.1:" .. port ..
        " --timeout 10s")
      H.kill(pid)
      assert.equals(0, rc, err)
      assert.matches("127.0.0.1:" .. port .. "/udp free after", err, 1, true)
    end)

    it("find-free --udp prints a port a UDP server can bind", function()
      local out, err, rc = cli("find-free --udp")
      assert.equals(0, rc, err)
      local u = H.udp("0.0.0.0", assert(tonumber(out:match("^(%d+)\n$")), out))
      u.close()
    end)

    it("who --udp names the process that holds a UDP port", function()
      if H.portable then return pending(H.NO_LISTEN_MODE) end
      local u = H.udp("127.0.0.1")
      local out, _, rc = cli("who --udp " .. u.port)
      assert.equals(0, rc, out)
      assert.matches(u.port .. "/udp on 127.0.0.1 is held by pid " .. H.pid() .. " %(", out)
      out, _, rc = cli("who " .. u.port)
      assert.equals(1, rc, out)
      assert.equals("nothing listens on " .. u.port .. "\n", out)
      u.close()
      out, _, rc = cli("who --udp " .. u.port)
      assert.equals(1, rc, out)
      assert.equals("nothing listens on " .. u.port .. "/udp\n", out)
    end)

    it("refuses --mode connect with --udp, saying why, with exit 2", function()
      local out, err, rc = cli("check --udp 80 --mode connect")
      assert.equals(2, rc, err)
      assert.equals("", out)
      assert.matches("--mode: mode must be bind or listen with proto udp (a connect probe has no " ..
        "handshake to observe over UDP, and its datagram would reach the server)", err, 1, true)
      local _
      _, err, rc = cli("wait-used --udp 80 --mode any")
      assert.equals(2, rc, err)
    end)
  end)

  describe("usage errors", function()
    local cases = {
      { "", "no command given" },
      { "frobnicate", "unknown command 'frobnicate'" },
      { "check", "check takes [HOST:]PORT [HOST]" },
      { "check 0", "must be a port number in 1..65535, not '0'" },
      { "check 80.5", "not '80.5'" },
      { "check db:http", "not 'http'" },
      { "check ::1:80", "put an IPv6 address in brackets, as in [::1]:6379" },
      { "check :80", "empty host in ':80'" },
      { "check db:80 otherhost", "give the host once" },
      { "check 80 --retry 5", "check does not take --retry" },
      { "check 80 --mode nope", "--mode: mode must be one of connect" },
      { "check 80 --bogus", "unknown option '--bogus'" },
      { "wait-used", "name at least one [HOST:]PORT" },
      { "wait-used 80 --timeout 3h", "--timeout takes milliseconds or a number with ms, s or m" },
      { "wait-used 80 --retry", "--retry needs a value" },
      { "wait-used 80 --", "nothing to run after --" },
      { "find-free --from 70000", "--from must be a port number" },
      { "check 80 -- true", "check does not run a command" },
    }
    for _, c in ipairs(cases) do
      it("'" .. c[1] .. "' exits 2, even with --quiet", function()
        local out, err, rc = cli("--quiet " .. c[1])
        assert.equals(2, rc, err)
        assert.equals("", out)
        assert.matches(c[2], err, 1, true)
        assert.matches("(see tcp-port-used --help)", err, 1, true)
      end)
    end
  end)

  -- docs/cli.md: one spec per cell of the exit status table (why's column:
  -- spec/explain_spec.lua).
  describe("exit status, as docs/cli.md documents it", function()
    local function status(argstr)
      local out, err, rc = cli(argstr)
      return rc, err, out
    end
    -- 192.0.2.1 (TEST-NET-1) is never an address of this machine: a bind
    -- or listen probe there fails at once, and waiting cannot mend it.
    local cases = {
      { "check: 0 in use", 0, function() return "check 127.0.0.1:" .. l.port end },
      { "check: 1 free", 1, function() return "check 127.0.0.1:" .. r.port end },
      { "check: 2 usage error", 2, function() return "check" end },
      { "check: 2 the probe failed", 2, function() return "check 999.1.1.1:" .. l.port end },
      { "wait-used: 0 every port in use", 0, function() return "wait-used " .. l.port end },
      { "wait-used: CMD's own status after --", 5, function()
        return "wait-used " .. l.port .. " -- sh -c 'exit 5'" end },
      { "wait-used: 1 timed out", 1, function() return "wait-used " .. r.port .. " -t 100" end },
      { "wait-used: 2 usage error", 2, function() return "wait-used" end },
      { "wait-used: 2 an error retrying cannot mend", 2, function()
        return "wait-used 192.0.2.1:" .. r.port .. " --mode bind -t 10s -- echo ran" end },
      { "wait-used: 2 CMD could not be run", 2, function()
        return "wait-used " .. l.port .. " -- ./no-such-command-here" end },
      { "wait-free: 0 every port free", 0, function() return "wait-free 127.0.0.1:" .. r.port end },
      { "wait-free: CMD's own status after --", 6, function()
        return "wait-free 127.0.0.1:" .. r.port .. " -- sh -c 'exit 6'" end },
      { "wait-free: 1 timed out", 1, function() return "wait-free " .. l.port .. " -t 100" end },
      { "wait-free: 2 usage error", 2, function() return "wait-free" end },
      { "wait-free: 2 an error retrying cannot mend", 2, function()
        return "wait-free 192.0.2.1:" .. r.port .. " --mode bind -t 10s -- echo ran" end },
      { "wait-free: 2 CMD could not be run", 2, function()
        return "wait-free 127.0.0.1:" .. r.port .. " -- ./no-such-command-here" end },
      { "find-free: 0 a port printed", 0, function() return "find-free 127.0.0.1" end },
      { "find-free: 1 no free port in --from..--to", 1, function()
        return "find-free 127.0.0.1 --from " .. l.port .. " --to " .. l.port end },
      { "find-free: 2 usage error", 2, function() return "find-free a b" end },
      { "find-free: 2 usage error in the range", 2, function() return "find-free --from 3000 --to 2000" end },
      { "find-free: 2 a probe failed", 2, function() return "find-free 192.0.2.1 --from 2000 --to 2010" end },
      -- (the portable build has no listen mode: its who says so, with 2)
      { "who: 0 held", 0, function() return "who " .. l.port end, linux = true },
      { "who: 1 nothing listens", 1, function() return "who " .. r.port end, linux = true },
      { "who: 2 usage error", 2, function() return "who" end },
      { "who: 2 the kernel could not be asked", 2, function() return "who " .. l.port .. " 192.0.2.1" end },
      { "--help: 0", 0, function() return "--help" end },
      { "--version: 0", 0, function() return "--version" end },
    }
    for _, c in ipairs(cases) do
      if c.linux and H.portable then c = { c[1] .. " (portable build: 2)", 2, c[3] } end
      it(c[1], function()
        local rc, err, out = status(c[3]())
        assert.equals(c[2], rc, err)
        -- a failure prints nothing on stdout (a wait ran no command) and
        -- says why on stderr
        if rc == 2 then
          assert.equals("", out)
          assert.matches("^tcp%-port%-used: ", err)
        end
      end)
    end

    it("usage errors say where help is, library argument errors too", function()
      for _, a in ipairs { "who", "find-free --from 3000 --to 2000", "find-free 127.0.0.1 --to 80" } do
        local rc, err = status(a)
        assert.equals(2, rc, a)
        assert.matches("(see tcp-port-used --help)", err, 1, true)
        assert.not_matches("bin/tcp%-port%-used:%d+", err)
      end
    end)

    -- find-free with one end of the range given: --to alone searches from
    -- 1024, --from alone up to 65535. Those ends are fixed by the docs
    -- (docs/many-and-free.md, "Free ports"), so they are held in a
    -- namespace of the spec's own.
    it("find-free: 1 no free port, with --to alone and with --from alone", function()
      if not H.can_unshare() then return pending("no network namespaces here (unshare -n)") end
      local out = H.lua_in_netns(string.format([[
        local H, socket = require "helpers", require "socket"
        local low = assert(socket.bind("127.0.0.1", 1024))
        local high = assert(socket.bind("127.0.0.1", 65535))
        for _, a in ipairs { "127.0.0.1 --to 1024", "--to 1024", "127.0.0.1 --from 65535", "--from 65535" } do
          local out, rc = H.run(%q .. " find-free " .. a .. " 2>&1")
          print(a, rc, (out:gsub("\n", " ")))
        end
        low:close()
        high:close()]], CLI))
      local got = {}
      for a, rc, msg in out:gmatch("([^\n\t]+)\t(%d+)\t([^\n]*)") do got[a] = rc .. " " .. msg end
      assert.same({
        ["127.0.0.1 --to 1024"] = "1 tcp-port-used: bind 127.0.0.1: no free port in 1024..1024 ",
        ["--to 1024"] = "1 tcp-port-used: bind *: no free port in 1024..1024 ",
        ["127.0.0.1 --from 65535"] = "1 tcp-port-used: bind 127.0.0.1: no free port in 65535..65535 ",
        ["--from 65535"] = "1 tcp-port-used: bind *: no free port in 65535..65535 ",
      }, got)
    end)
  end)

  describe("readiness", function()
    local S = require "servers"
    local redis, n = S.redis_and_nginx()
    if not redis then
      pending(n)
      return
    end
    teardown(function()
      S.nginx_stop(n)
      S.redis_stop(redis)
    end)
    local R, N = "127.0.0.1:" .. redis.port, "127.0.0.1:" .. n.port

    it("checks URLs: ready exits 0, not ready 1 with the reason", function()
      os.remove(n.prefix .. "/up")
      local cases = {
        { "redis://" .. R, 0, "redis://" .. R .. " ready\n" },
        -- the password never shows
        { "redis://:secret@" .. R .. "/0", 0, "redis://:***@" .. R .. "/0 ready\n" },
        { "tcp://" .. R, 0, "tcp://" .. R .. " in use\n" },
        { R .. " --ready redis", 0, R .. " ready\n" },
        { "unix:" .. redis.dir .. "/redis.sock --ready redis", 0,
          "unix:" .. redis.dir .. "/redis.sock ready\n" },
        { "unix:" .. redis.dir .. "/redis.sock", 0, "unix:" .. redis.dir .. "/redis.sock in use\n" },
        { "http://" .. N .. "/healthz", 1, "http://" .. N .. "/healthz not ready (status 503)\n" },
        { "http://" .. N .. "/healthz --status 503", 0, "http://" .. N .. "/healthz ready\n" },
        { "http://" .. N .. "/no-content --status 200,201", 1,
          "http://" .. N .. "/no-content not ready (status 204)\n" },
        { N .. " --ready http --status 2xx", 1, N .. " not ready (status 403)\n" },
        { "redis://127.0.0.1:" .. r.port, 1, "redis://127.0.0.1:" .. r.port ..
          " not ready (nothing listens)\n" },
      }
      for _, c in ipairs(cases) do
        local out, err, rc = cli("check " .. c[1])
        assert.equals(c[2], rc, c[1] .. ": " .. err)
        assert.equals(c[3], out, c[1])
      end
      local out, err, rc = cli("check redis://" .. N)
      assert.equals(2, rc)
      assert.equals("", out)
      assert.matches("receive " .. N .. ": protocol error (not a Redis reply", err, 1, true)
    end)

    it("waits for several URLs, then runs the command", function()
      os.remove(n.prefix .. "/up")
      H.spawn("sleep 0.3; touch " .. n.prefix .. "/up")
      local out, err, rc = cli("wait-used redis://" .. R .. " http://" .. N .. "/healthz" ..
        " unix:" .. redis.dir .. "/redis.sock --ready redis --timeout 20s -- echo serving")
      assert.equals(0, rc, err)
      assert.equals("serving\n", out)
      assert.matches("waiting up to 20 s for redis://" .. R .. ", http://" .. N .. "/healthz and unix:" ..
        redis.dir .. "/redis.sock to be ready", err, 1, true)
    end)

    it("says the last answer when it times out", function()
      os.remove(n.prefix .. "/up")
      local _, err, rc = cli("wait-used http://" .. N .. "/healthz --timeout 300ms")
      assert.equals(1, rc)
      assert.matches("timed out after %d+ ms waiting for http://" .. N:gsub("%.", "%%.") ..
        "/healthz to be ready: .* but is not ready: status 503", err)
    end)

    it("sends a PostgreSQL URL's user and database, never its password", function()
      local out, _, rc = cli("check 'postgres://app:secret@127.0.0.1:" .. l.port ..
        "/orders%2Fdb' --timeout 300ms")
      assert.equals(2, rc)
      assert.equals("", out)
      local c = assert(l.sock:accept())
      c:settimeout(5)
      local head = assert(c:receive(4))
      local len = ((head:byte(1) * 256 + head:byte(2)) * 256 + head:byte(3)) * 256 + head:byte(4)
      local body = assert(c:receive(len - 4))
      c:close()
      assert.equals("\0\3\0\0user\0app\0database\0orders/db\0application_name\0tcp-port-used\0\0", body)
    end)

    it("takes default ports and brackets in URLs, and rejects what it cannot use", function()
      for _, c in ipairs {
        { "check ftp://db", "unknown scheme 'ftp'" },
        { "check https://db/", "unknown scheme 'https'" },
        { "check tcp://db", "the port in 'tcp://db' must be a port number" },
        { "check tcp://db:5/x", "tcp:// takes HOST:PORT only" },
        { "check http://:80/", "empty host in 'http://:80/'" },
        { "check redis://::1", "put an IPv6 address in brackets" },
        { "check redis://db:99999", "the port in 'redis://db:99999' must be a port number" },
        { "check " .. R .. " --status 200", "--status needs an HTTP resource or --ready http" },
        { "check " .. R .. " --ready mysql", "ready must be one of http, redis, postgres" },
        { "check http://" .. N .. "/ --status 2yy", "status must be an HTTP status" },
        { "check http://" .. N .. "/ --mode listen", 'mode must be "connect" with ready' },
        { "check redis://" .. R .. " localhost", "give the host once" },
      } do
        local out, err, rc = cli(c[1])
        assert.equals(2, rc, c[1])
        assert.equals("", out)
        assert.matches(c[2], err, 1, true)
      end
    end)
  end)
end)
