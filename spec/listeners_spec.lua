-- tpu.listeners and tpu.wait_for_listeners on real process trees: a
-- shell whose children bind port 0 (one TCP, one UDP) and whose
-- grandchild listens too, next to listeners of unrelated processes.
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"

-- Polls f (every 10 ms, at most s seconds) until it returns a value.
local await = H.await

local function lines_of(path)
  local t = {}
  local f = io.open(path)
  if f then
    for l in f:lines() do t[#t + 1] = l end
    f:close()
  end
  return t
end

-- Lua code that binds port 0 on host (proto "udp": a UDP socket), after
-- delay_s, and appends "kind pid port" to report; then sleeps.
local function binder(kind, proto, host, report, delay_s, after)
  return H.lua_cmd(string.format([[
    local s = require 'socket'
    s.sleep(%f)
    local H = require 'helpers'
    local l = H[%q](%q)
    local f = io.open(%q, 'a'); f:write(%q, ' ', H.pid(), ' ', l.port, '\n'); f:close()
    %s
    s.sleep(60)]], delay_s or 0, proto == "udp" and "udp" or "listen", host, report, kind,
    after or ""))
end

-- The tree: a shell (the root, our child) whose child T listens on TCP,
-- whose child U binds UDP and runs a grandchild G that listens on TCP
-- (::1 where the machine has IPv6). Returns the root's pid, the
-- { kind = { pid, port } } of the three, and a function that ends them.
local function tree()
  local report = os.tmpname()
  os.remove(report)
  local g = binder("G", "tcp", H.has_ipv6() and "::1" or "127.0.0.1", report)
  local script = binder("T", "tcp", "127.0.0.1", report) .. " & " ..
    binder("U", "udp", "127.0.0.1", report, 0, "os.execute(" .. string.format("%q", "exec " .. g) .. ")") ..
    " & wait"
  local f = assert(io.popen("unset LD_PRELOAD; echo $$; exec sh -c " .. H.quote(script)))
  local root = tonumber(f:read("*l"))
  local got = await("the tree to bind", function()
    local l = lines_of(report)
    if #l < 3 then return nil end
    local t = {}
    for _, line in ipairs(l) do
      local kind, pid, port = line:match("^(%u) (%d+) (%d+)$")
      t[kind] = { pid = tonumber(pid), port = tonumber(port) }
    end
    return t
  end)
  os.remove(report)
  return root, got, function()
    for _, k in ipairs { "G", "U", "T" } do os.execute("kill " .. got[k].pid .. " 2>/dev/null") end
    f:close()
  end
end

local function ports_of(list)
  local t = {}
  for i, l in ipairs(list) do t[i] = l.port end
  table.sort(t)
  return t
end

local function sorted(...)
  local t = { ... }
  table.sort(t)
  return t
end

if H.portable then
  describe("listeners (portable core)", function()
    it("answers ENOTSUP", function()
      local r, err, code = tpu.listeners { pid = H.pid() }
      assert.are.same({ nil, "ENOTSUP" }, { r, code })
      assert.matches("Linux", err)
      assert.are.same({ nil, "ENOTSUP" },
        { (select(1, tpu.wait_for_listeners { pid = H.pid(), timeout_ms = 100 })),
          (select(3, tpu.wait_for_listeners { pid = H.pid(), timeout_ms = 100 })) })
    end)
  end)
  return
end

for _, names in ipairs { "socket", "tables" } do
describe("listeners (names from the " .. names .. ")", function()
  local procs = require "tcp_port_used.procs"
  setup(function() procs.names = names end)
  teardown(function() procs.names = "socket" end)

  it("lists the sockets of a process tree, and only of that tree", function()
    local root, t, stop = tree()
    -- listeners of other processes on this machine, made after the tree
    -- started (a socket open when it started was inherited, and is the
    -- tree's too): a child of ours, and one in this process
    local _, other_port, stop_other = H.child_listener()
    local own = H.listen("127.0.0.1", 0)
    local ok, err = pcall(function()
      local tcp = assert(tpu.listeners { pid = root })
      assert.are.same(sorted(t.T.port, t.G.port), ports_of(tcp))
      for _, l in ipairs(tcp) do
        assert.are.equal("tcp", l.proto)
        local who = l.port == t.T.port and t.T or t.G
        assert.are.equal(who.pid, l.pid)
        assert.are.equal(H.lua, l.command:match("^(%S+)"))
        assert.is_number(l.inode)
      end
      local g = tcp[1].port == t.G.port and tcp[1] or tcp[2]
      assert.are.same(H.has_ipv6() and { "::1", "inet6" } or { "127.0.0.1", "inet" },
        { g.address, g.family })

      local udp = assert(tpu.listeners { pid = root, proto = "udp" })
      assert.are.same({ t.U.port }, ports_of(udp))
      assert.are.same({ "udp", "127.0.0.1", "inet", t.U.pid },
        { udp[1].proto, udp[1].address, udp[1].family, udp[1].pid })

      local any = assert(tpu.listeners { pid = root, proto = "any" })
      assert.are.same(sorted(t.T.port, t.G.port, t.U.port), ports_of(any))
      for _, l in ipairs(any) do
        assert.are_not.equal(other_port, l.port)
        assert.are_not.equal(own.port, l.port)
      end

      -- without the tree: the shell itself holds none; each child its own
      assert.are.same({}, assert(tpu.listeners { pid = root, tree = false, proto = "any" }))
      assert.are.same({ t.T.port }, ports_of(assert(tpu.listeners { pid = t.T.pid, tree = false })))
      -- U's tree holds its own UDP port and G's TCP port
      assert.are.same(sorted(t.U.port, t.G.port),
        ports_of(assert(tpu.listeners { pid = t.U.pid, proto = "any" })))
      assert.are.same({}, assert(tpu.listeners { pid = t.U.pid, tree = false }))
      -- the positional form is the tree's TCP listeners
      assert.are.same(sorted(t.T.port, t.G.port), ports_of(assert(tpu.listeners(root))))
    end)
    stop()
    stop_other()
    own.close()
    assert(ok, err)
  end)
end)
end

describe("listeners", function()

  it("answers ESRCH for a process that does not exist or has exited", function()
    local f = assert(io.popen("unset LD_PRELOAD; echo $$"))
    local pid = tonumber(f:read("*l"))
    f:close()
    local r, err, code = tpu.listeners { pid = pid }
    assert.are.same({ nil, "ESRCH" }, { r, code })
    assert.are.equal("listeners of process " .. pid .. ": no such process (or it has exited)", err)
    -- a child that has exited and is not reaped yet (a zombie) has no listeners either
    local z = assert(io.popen("unset LD_PRELOAD; echo $$; exec sh -c 'exit 0'"))
    local zpid = tonumber(z:read("*l"))
    await("the child to end", function() return core.proc_state(zpid) == "exited" end)
    local zr, _, zcode = tpu.listeners { pid = zpid, tree = false }
    local tr, _, tcode = tpu.listeners { pid = zpid }
    z:close()
    assert.are.same({ nil, "ESRCH", nil, "ESRCH" }, { zr, zcode, tr, tcode })
  end)

  it("refuses bad arguments, naming them", function()
    for _, bad in ipairs { 0, -1, 1.5, "12", math.huge, 0 / 0 } do
      assert.error_matches(function() tpu.listeners { pid = bad } end,
        "bad argument #1 to 'listeners' %(pid must be a positive integer, got ")
    end
    assert.error_matches(function() tpu.listeners { pid = 1, proto = "sctp" } end,
      "proto must be one of tcp, udp, any")
    assert.error_matches(function() tpu.listeners { pid = 1, tree = "yes" } end,
      "tree must be a boolean")
    assert.error_matches(function() tpu.listeners { pid = 1, port = 80 } end,
      "unknown option 'port'")
    assert.error_matches(function() tpu.wait_for_listeners { pid = 1, count = 0 } end,
      "count must be an integer in 1..65535, got 0")
    assert.error_matches(function() tpu.wait_for_listeners { pid = 1, count = 1, ports = { 80 } } end,
      "give count or ports, not both")
    assert.error_matches(function() tpu.wait_for_listeners { pid = 1, ports = { 0 } } end,
      "ports%[1%] must be an integer in 1..65535")
  end)
end)

describe("wait_for_listeners", function()
  it("returns the listeners of a child that binds after 300 ms", function()
    local report = os.tmpname()
    local f = assert(io.popen("unset LD_PRELOAD; echo $$; exec " .. binder("L", "tcp", "127.0.0.1", report, 0.3)))
    local pid = tonumber(f:read("*l"))
    -- nothing yet: the wait has something to wait for
    assert.are.same({}, assert(tpu.listeners { pid = pid }))
    local list, err = tpu.wait_for_listeners { pid = pid, timeout_ms = 30000 }
    local line = await("the child's report", function() return lines_of(report)[1] end)
    os.execute("kill " .. pid)
    f:close()
    os.remove(report)
    assert(list, err)
    assert.are.equal(1, #list)
    assert.are.equal(tonumber(line:match("(%d+)$")), list[1].port)
    assert.are.same({ pid, "127.0.0.1", "tcp" }, { list[1].pid, list[1].address, list[1].proto })
  end)

  it("waits for every port in ports, and times out with ETIMEDOUT saying what it had", function()
    local _, port, stop = H.child_listener()
    local pid = tonumber(assert(tpu.owner(port))[1].pid)
    local list = assert(tpu.wait_for_listeners { pid = pid, ports = { port }, timeout_ms = 30000 })
    assert.are.same({ port }, ports_of(list))
    local r, err, code = tpu.wait_for_listeners { pid = pid, count = 2, timeout_ms = 200 }
    local r2, _, code2 = tpu.wait_for_listeners { pid = pid, ports = { port, port == 65535 and 1 or port + 1 },
                                                  timeout_ms = 200 }
    stop()
    assert.are.same({ nil, "ETIMEDOUT", nil, "ETIMEDOUT" }, { r, code, r2, code2 })
    assert.are.equal("process " .. pid .. " did not listen within 200 ms (listening on 127.0.0.1:" ..
      port .. "; waiting for 2 listeners)", err)
  end)

  it("ends at once, with the status, when a child exits before it listens", function()
    local f = assert(io.popen("unset LD_PRELOAD; echo $$; exec sh -c 'sleep 0.2; exit 3'"))
    local pid = tonumber(f:read("*l"))
    local t0 = core.now()
    local r, err, code, exit = tpu.wait_for_listeners { pid = pid, timeout_ms = 60000 }
    local took = core.now() - t0
    assert.is_nil(r)
    assert.are.equal("ESRCH", code)
    assert.are.equal("process " .. pid .. " exited (status 3) before it listened", err)
    assert.are.same({ pid = pid, code = 3 }, exit)
    -- not at the timeout: far from it
    assert.is_true(took < 30000, took)
    -- the wait did not reap the child: its owner still can
    local _, _, status = f:close()
    if type(status) == "number" then assert.are.equal(3, status) end
  end)

  it("names the signal of a child killed before it listens", function()
    local f = assert(io.popen("unset LD_PRELOAD; echo $$; exec sh -c 'kill -9 $$'"))
    local pid = tonumber(f:read("*l"))
    local r, err, code, exit = tpu.wait_for_listeners { pid = pid, timeout_ms = 60000 }
    f:close()
    assert.are.same({ nil, "ESRCH", "process " .. pid .. " exited (status signal 9) before it listened" },
      { r, code, err })
    assert.are.equal(9, exit.signal)
  end)

  it("yields between looks inside a coroutine, and returns the list", function()
    local report = os.tmpname()
    local f = assert(io.popen("unset LD_PRELOAD; echo $$; exec " .. binder("L", "tcp", "127.0.0.1", report, 0.3)))
    local pid = tonumber(f:read("*l"))
    local yields = 0
    local co = coroutine.create(function()
      return tpu.wait_for_listeners { pid = pid, timeout_ms = 30000 }
    end)
    local ok, v, err
    repeat
      ok, v, err = coroutine.resume(co)
      assert(ok, v)
      if coroutine.status(co) == "suspended" then
        yields = yields + 1
        assert.is_number(v)
        core.sleep(v)
      end
    until coroutine.status(co) == "dead"
    os.execute("kill " .. pid)
    f:close()
    os.remove(report)
    assert(v, err)
    assert.are.equal(1, #v)
    assert.is_true(yields > 0)
  end)
end)

describe("wait_for_listeners in nginx", function()
  local NG = require "ngxrun"
  if NG.missing() then
    pending("nginx with the lua module is not here: " .. NG.missing())
    return
  end

  it("waits in a timer, while the worker keeps serving", function()
    local nginx = NG.start("procs.conf")
    local report = os.tmpname()
    local pid = H.spawn("exec " .. binder("L", "tcp", "127.0.0.1", report, 0.3))
    local ok, err = pcall(function()
      assert.are.equal("started", nginx:body("/wait?pid=" .. pid))
      -- served while the timer waits
      assert.are.equal("pong", nginx:body("/ping"))
      local v = await("the timer's answer", function()
        local r = nginx:body("/result?key=" .. pid)
        return r ~= "nil" and r
      end)
      -- (the child reports its port after it listens)
      local port = await("the child's report", function() return lines_of(report)[1] end):match("(%d+)$")
      assert.are.equal("port " .. port .. " 1", v)
    end)
    os.execute("kill " .. pid .. " 2>/dev/null")
    os.remove(report)
    nginx:stop()
    assert(ok, err)
  end)
end)

describe("wait_for_listeners in Neovim", function()
  local _, has_nvim = H.run("command -v nvim >/dev/null 2>&1")
  if has_nvim ~= 0 then
    pending("nvim is not installed")
    return
  end

  local nvim = H.nvim

  it("hands a plugin the port its uv.spawn child bound, then connects; and an early exit's status", function()
    local report = os.tmpname()
    local out, rc = nvim(string.format([[
      local uv = vim.uv or vim.loop
      local ad = require "tcp_port_used.uv"
      local function say(...) io.stdout:write(table.concat({ ... }, " "), "\n") end
      local ticks = 0
      local ticker = uv.new_timer()
      ticker:start(5, 5, function() ticks = ticks + 1 end)
      -- the adapter binds port 0 itself: no port is chosen, closed and handed over
      local _, pid = ad.spawn("sh", { args = { "-c", %q } })
      local done
      coroutine.wrap(function()
        local list, err = ad.wait_for_listeners { pid = pid, timeout_ms = 20000 }
        assert(list, err)
        local c = uv.new_tcp()
        c:connect(list[1].address, list[1].port, function(e)
          say("connected", tostring(e), list[1].port, ticks >= 20 and "ticking" or "frozen")
          c:close()
          done = true
        end)
      end)()
      vim.wait(20000, function() return done end, 10)
      -- the child reports its port just after it listens: let it, before it is ended
      vim.wait(20000, function()
        local f = io.open(%q)
        local line = f and f:read("*l")
        if f then f:close() end
        return line ~= nil and line:match("%%d+$") ~= nil
      end, 10)
      uv.kill(pid, "sigterm")
      local _, pid2 = ad.spawn("sh", { args = { "-c", "sleep 0.2; exit 3" } })
      local r, err, code = ad.wait_for_listeners { pid = pid2, timeout_ms = 20000 }
      say("early", tostring(r), code, tostring(err == "process " .. pid2 .. " exited (status 3) before it listened"))
      ticker:close()
    ]], "exec " .. binder("L", "tcp", "127.0.0.1", report, 0.3), report))
    local port = (lines_of(report)[1] or ""):match("(%d+)$")
    os.remove(report)
    assert.are.equal(0, rc, out)
    assert.matches("connected nil " .. tostring(port) .. " ticking\n", out, 1, true)
    assert.matches("early nil ESRCH true\n", out, 1, true)
  end)
end)
