-- tpu.explain: every state staged for real, and the timeout of a wait
-- carrying the same explanation (its fourth value, the end of its message).
-- Loopback states here; an interface address in a network namespace of
-- its own; the remote states against a second namespace over a veth pair.
local H = require "helpers"
local C = require "calls"
local socket = require "socket"
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"

-- The one listener of e on port, or an error naming what e says.
local function only(e, port)
  assert.are.equal(1, #e.listeners, e.text)
  local l = e.listeners[1]
  assert.are.equal(port, l.port)
  return l
end

-- A wait for state want (true: used) that times out: its explanation must
-- be explain's, and its message must end with the explanation's text.
local function times_out_alike(o, want, e)
  local w = {}
  for k, v in pairs(o) do w[k] = v end
  -- (a few probes: a free wait's accepted ones would fill a queue never drained)
  w.in_use, w.timeout_ms, w.attempt_ms, w.retry_ms = want, 300, 200, 100
  local ok, msg, code, we = tpu.wait_for_status(w)
  assert.is_nil(ok)
  assert.are.equal("ETIMEDOUT", code)
  assert.are.equal(e.state, we.state)
  if want then assert.are.equal(e.text, we.text) end
  assert.are.equal("timeout after 300 ms waiting for " .. require("tcp_port_used.explain").where(
    o.host, o.port) .. ": " .. we.text, msg)
  return we
end

describe("explain on this machine", function()
  if H.portable then
    it("has the probe-only states, and says the kernel's tables are not read", function()
      local r = H.reserve()
      local e = tpu.explain(r.port, "127.0.0.1")
      assert.same({ "refused", {}, { false } }, { e.state, e.listeners, e.probe })
      assert.are.equal("127.0.0.1:" .. r.port .. " refused the connection: nothing listens there; " ..
        "the kernel's socket tables are not read on this system", e.text)
      local _, msg, code, w = tpu.wait_until_used { port = r.port, host = "127.0.0.1", timeout_ms = 100 }
      assert.same({ "ETIMEDOUT", e.text }, { code, w.text })
      assert.matches(": " .. e.text, msg, 1, true)
      r.close()
    end)
    return
  end

  it("listening: names the listener, its queue and backlog, and the probe", function()
    local l = H.listen("127.0.0.1", 0, 7)
    local e = tpu.explain(l.port, "127.0.0.1")
    assert.are.equal("listening", e.state)
    assert.same({ host = "127.0.0.1", port = l.port, proto = "tcp" }, e.asked)
    assert.same({ true }, e.probe)
    local s = only(e, l.port)
    assert.same({ "127.0.0.1", "inet", "tcp", 0, 7 }, { s.address, s.family, s.proto, s.queue, s.backlog })
    assert.matches("accepts connections on 127.0.0.1:" .. l.port .. "$", e.text)
    -- a free wait names who still holds it, pid and all
    local we = times_out_alike({ port = l.port, host = "127.0.0.1" }, false, e)
    assert.are.equal(H.pid(), we.listeners[1].pid)
    assert.matches("%(pid " .. H.pid() .. ", user root%) still listens on 127%.0%.0%.1:" .. l.port, we.text)
    l.close()
  end)

  it("other-family: ::1 only, 127.0.0.1 asked (and the reverse)", function()
    if not H.has_ipv6() then return pending("no IPv6 here") end
    local l6 = H.listen("::1")
    local e = tpu.explain { port = l6.port, host = "127.0.0.1" }
    assert.are.equal("other-family", e.state)
    local s = only(e, l6.port)
    assert.same({ "::1", "inet6", H.pid() }, { s.address, s.family, s.pid })
    assert.matches("%(pid " .. H.pid() .. ", user root%) listens on %[::1%]:" .. l6.port ..
      " only; nothing on 127%.0%.0%.1:" .. l6.port .. "$", e.text)
    assert.same({ false }, e.probe)
    times_out_alike({ port = l6.port, host = "127.0.0.1" }, true, e)
    l6.close()
    local l4 = H.listen("127.0.0.1")
    e = tpu.explain(l4.port, "::1")
    assert.are.equal("other-family", e.state)
    assert.are.equal("127.0.0.1", only(e, l4.port).address)
    l4.close()
  end)

  it("other-address: a listener on 127.0.0.2, 127.0.0.1 asked", function()
    local l = H.listen("127.0.0.2")
    local e = tpu.explain(l.port, "127.0.0.1")
    assert.are.equal("other-address", e.state)
    local s = only(e, l.port)
    assert.same({ "127.0.0.2", H.pid() }, { s.address, s.pid })
    assert.matches("listens on 127%.0%.0%.2:" .. l.port .. " only; nothing on 127%.0%.0%.1:", e.text)
    times_out_alike({ port = l.port, host = "127.0.0.1" }, true, e)
    l.close()
  end)

  it("other-proto: a UDP socket on a TCP ask, and a TCP listener on a UDP ask", function()
    local u = H.udp("127.0.0.1")
    local e = tpu.explain(u.port, "127.0.0.1")
    assert.are.equal("other-proto", e.state)
    local s = only(e, u.port)
    assert.same({ "udp", "127.0.0.1", H.pid() }, { s.proto, s.address, s.pid })
    assert.matches("nothing listens on TCP 127%.0%.0%.1:" .. u.port .. "; .* holds UDP port", e.text)
    times_out_alike({ port = u.port, host = "127.0.0.1" }, true, e)
    u.close()
    local l = H.listen("127.0.0.1")
    e = tpu.explain { port = l.port, host = "127.0.0.1", proto = "udp" }
    assert.are.equal("other-proto", e.state)
    assert.are.equal("tcp", only(e, l.port).proto)
    l.close()
  end)

  it("backlog-full: backlog 1, never accepting, three clients queued", function()
    local l = H.listen("127.0.0.1", 0, 1)
    local clients = {}
    for i = 1, 3 do
      clients[i] = socket.tcp()
      clients[i]:settimeout(0)
      clients[i]:connect("127.0.0.1", l.port)
    end
    -- the kernel queues backlog + 1 (its test is queue > backlog); the third SYN is dropped
    local deadline = core.now() + 5000
    local e
    repeat
      e = tpu.explain { port = l.port, host = "127.0.0.1", timeout_ms = 200 }
    until e.state == "backlog-full" or core.now() > deadline
    assert.are.equal("backlog-full", e.state, e.text)
    local s = only(e, l.port)
    assert.same({ 2, 1, H.pid() }, { s.queue, s.backlog, s.pid })
    assert.same({ nil, "connect 127.0.0.1:" .. l.port .. ": timed out", "ETIMEDOUT" }, e.probe)
    assert.matches("its accept queue is full %(2 waiting, backlog 1%)", e.text)
    times_out_alike({ port = l.port, host = "127.0.0.1" }, true, e)
    for _, c in ipairs(clients) do c:close() end
    l.close()
  end)

  it("not-listening, with the TIME_WAIT entries its last clients left", function()
    local l = H.listen("127.0.0.1")
    for _ = 1, 3 do
      local c = assert(socket.connect("127.0.0.1", l.port))
      local a = assert(l.sock:accept())
      c:close() -- the client closes first: its end stays in TIME_WAIT
      a:close()
    end
    l.close()
    local e = tpu.explain(l.port, "127.0.0.1")
    assert.are.equal("not-listening", e.state)
    assert.same({}, e.listeners)
    assert.are.equal(H.time_wait_to(l.port), e.time_wait)
    assert.is_true(e.time_wait >= 3, e.text)
    assert.matches("nothing listens on port " .. l.port .. " on this machine; %d+ connections to " ..
      "it are in TIME_WAIT", e.text)
    times_out_alike({ port = l.port, host = "127.0.0.1" }, true, e)
    -- the /proc backend counts the same
    assert.are.equal(e.time_wait, core.time_wait(l.port, "proc"))
  end)

  it("not-listening without clients: time_wait 0, and the probe's refusal", function()
    local r = H.reserve()
    local e = tpu.explain(r.port)
    assert.same({ "not-listening", 0, { false } }, { e.state, e.time_wait, e.probe })
    assert.same({ port = r.port, proto = "tcp" }, e.asked)
    assert.are.equal("nothing listens on port " .. r.port .. " on this machine", e.text)
    r.close()
  end)

  it("lists another user's socket without a pid where its process may not be read", function()
    local _, rc = H.run("[ \"$(id -u)\" = 0 ] && id nobody >/dev/null 2>&1 && command -v runuser >/dev/null")
    if rc ~= 0 then return pending("needs root, the user nobody and runuser") end
    -- (a child of its own holds it: a socket of this process would be
    -- inherited by the reader, which may read its own descriptors)
    local _, port, stop = H.child_listener("::1")
    local out = H.run("runuser -u nobody -- " .. H.lua_cmd(string.format([[
      local e = require("tcp_port_used").explain(%d, "127.0.0.1")
      local l = e.listeners[1]
      print(e.state, l and l.address, l and l.user, l and l.pid, e.text)]], port)) .. " 2>&1")
    stop()
    assert.are.equal("other-family\t::1\troot\tnil\ta socket of user root listens on [::1]:" ..
      port .. " only; nothing on 127.0.0.1:" .. port .. "\n", out)
  end)

  it("raises for bad arguments only", function()
    assert.has_error(function() tpu.explain(0) end,
      "bad argument #1 to 'explain' (port must be an integer in 1..65535, got 0)")
    assert.has_error(function() tpu.explain { port = 80, bogus = 1 } end)
    assert.has_error(function() tpu.explain { unix = "/tmp/x" } end)
    assert.are.equal("no-name", tpu.explain(80, "999.1.1.1").state)
  end)
end)

-- The literal a child printed after its mark.
local function result_of(out)
  local lit = out:match("\n?%-%-result%-%-\n(.*)$")
  assert(lit, "the child failed:\n" .. out)
  return C.load(lit)
end

describe("explain in network namespaces", function()
  if H.portable then return end
  if not H.netns_or_pending(it) then return end

  it("other-address and listening: an interface's address", function()
    local out = H.lua_in_netns([[
      local H, C, tpu = require "helpers", require "calls", require "tcp_port_used"
      local l = H.listen("10.11.0.1")
      local r = {}
      for _, host in ipairs { "127.0.0.1", "10.11.0.1" } do
        local e = tpu.explain(l.port, host)
        r[host] = { state = e.state, text = e.text, address = e.listeners[1] and e.listeners[1].address,
                    pid = e.listeners[1] and e.listeners[1].pid }
      end
      local _, msg, code, w = tpu.wait_until_used { port = l.port, host = "127.0.0.1", timeout_ms = 200 }
      r.wait = { msg = msg, code = code, text = w.text }
      r.pid, r.port = H.pid(), l.port
      io.write("\n--result--\n", C.literal(r))]],
      -- (a veth end where the kernel has no dummy interfaces)
      "{ ip link add tpu0 type dummy 2>/dev/null || ip link add tpu0 type veth peer name tpu1 && " ..
      "ip link set tpu1 up; } && ip addr add 10.11.0.1/24 dev tpu0 && ip link set tpu0 up && ")
    local r = result_of(out)
    assert.same({ "other-address", "10.11.0.1", r.pid },
      { r["127.0.0.1"].state, r["127.0.0.1"].address, r["127.0.0.1"].pid })
    assert.matches("listens on 10%.11%.0%.1:" .. r.port .. " only; nothing on 127%.0%.0%.1:", r["127.0.0.1"].text)
    assert.are.equal("listening", r["10.11.0.1"].state)
    assert.are.equal("ETIMEDOUT", r.wait.code)
    assert.are.equal(r["127.0.0.1"].text, r.wait.text)
    assert.are.equal("timeout after 200 ms waiting for 127.0.0.1:" .. r.port .. ": " .. r.wait.text, r.wait.msg)
  end)

  describe("a remote host", function()
    local tag = string.format("tpu-explain-%d-%d", H.pid(), math.random(1e6))
    local A, B = tag .. "-a", tag .. "-b"
    local server, ports

    setup(function()
      local _, rc = H.run(table.concat({
        "ip netns add " .. A, "ip netns add " .. B,
        "ip link add tpuva netns " .. A .. " type veth peer name tpuvb netns " .. B,
        "ip -n " .. A .. " addr add 10.12.0.1/24 dev tpuva", "ip -n " .. A .. " link set tpuva up",
        "ip -n " .. A .. " link set lo up",
        "ip -n " .. B .. " addr add 10.12.0.2/24 dev tpuvb", "ip -n " .. B .. " link set tpuvb up",
        "ip -n " .. B .. " link set lo up",
        "ip -n " .. A .. " route add unreachable 10.14.0.0/24",
      }, " && ") .. " 2>&1")
      if rc ~= 0 then return end
      -- in B: a listener, a bound port that refuses, one whose SYNs are dropped
      local file = os.tmpname()
      server = H.spawn("ip netns exec " .. B .. " " .. H.lua_cmd(string.format([[
        local H = require "helpers"
        local l, r, d = H.listen("10.12.0.2"), H.reserve("10.12.0.2"), H.reserve("10.12.0.2")
        local f = io.open(%q, "w"); f:write(l.port, " ", r.port, " ", d.port, "\n"); f:close()
        require("socket").sleep(60)]], file)))
      local deadline = core.now() + 10000
      repeat
        local f = io.open(file)
        if f then
          local l, r, d = f:read("*n", "*n", "*n")
          f:close()
          if d then ports = { listening = l, refused = r, dropped = d } end
        end
        if not ports then core.sleep(10) end
      until ports or core.now() > deadline
      os.remove(file)
      if ports then
        H.run("ip netns exec " .. B .. " sh -c " .. H.quote(
          "nft add table ip tpu && nft add chain ip tpu in '{ type filter hook input priority 0; }' && " ..
          "nft add rule ip tpu in tcp dport " .. ports.dropped .. " drop"))
      end
    end)

    teardown(function()
      if server then H.kill(server) end
      H.run("ip netns pids " .. B .. " 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del " .. A ..
        " 2>/dev/null; ip netns del " .. B .. " 2>/dev/null")
    end)

    it("listening, refused, filtered, unreachable: from the probe alone", function()
      if not ports then return pending("could not make the namespaces and the server in them") end
      local out = H.run("ip netns exec " .. A .. " " .. H.lua_cmd(string.format([[
        local C, tpu = require "calls", require "tcp_port_used"
        local asks = { listening = { %d, "10.12.0.2" }, refused = { %d, "10.12.0.2" },
                       filtered = { %d, "10.12.0.2" }, unreachable = { %d, "10.14.0.1" },
                       netunreach = { %d, "10.13.0.1" } }
        local r = {}
        for name, a in pairs(asks) do
          local e = tpu.explain { port = a[1], host = a[2], timeout_ms = 300 }
          local _, msg, code, w = tpu.wait_until_used { port = a[1], host = a[2], timeout_ms = 300,
                                                        attempt_ms = 300 }
          r[name] = { state = e.state, text = e.text, code = e.probe[3], n = #e.listeners,
                      wait = w and { msg = msg, code = code, state = w.state, text = w.text } }
        end
        io.write("\n--result--\n", C.literal(r))]], ports.listening, ports.refused, ports.dropped,
        ports.listening, ports.listening)) .. " 2>&1")
      local r = result_of(out)
      assert.same({ "listening", "refused", "filtered", "unreachable", "unreachable" },
        { r.listening.state, r.refused.state, r.filtered.state, r.unreachable.state, r.netunreach.state })
      assert.same({ nil, nil, "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH" },
        { r.listening.code, r.refused.code, r.filtered.code, r.unreachable.code, r.netunreach.code })
      -- a remote host's sockets are not this machine's to list
      assert.same({ 0, 0, 0 }, { r.listening.n, r.refused.n, r.filtered.n })
      assert.are.equal("10.12.0.2:" .. ports.refused .. " refused the connection: the host " ..
        "answered, but nothing listens on port " .. ports.refused .. " there", r.refused.text)
      assert.is_nil(r.listening.wait)
      for _, name in ipairs { "refused", "filtered", "unreachable", "netunreach" } do
        local w = r[name].wait
        assert.are.equal("ETIMEDOUT", w.code, name)
        assert.are.equal(r[name].state, w.state, name)
        assert.are.equal(r[name].text, w.text, name)
        assert.matches(": " .. w.text, w.msg, 1, true)
      end
    end)
  end)
end)

describe("tcp-port-used why", function()
  if H.portable then return end
  local CLI = string.format("LUA_PATH=%s LUA_CPATH=%s ", H.quote(H.root .. "/lua/?.lua;" .. H.root ..
    "/lua/?/init.lua;;"), H.quote(H.cpath .. ";;")) .. H.lua_exec() .. " " ..
    H.quote(H.root .. "/bin/tcp-port-used")

  local function why(argstr)
    return H.run(CLI .. " " .. argstr .. " 2>&1")
  end

  it("prints the sentence and one line per socket; 0 listening, 1 otherwise, 2 usage", function()
    local l = H.listen("127.0.0.1", 0, 9)
    local out, rc = why("why 127.0.0.1:" .. l.port)
    assert.are.equal(0, rc, out)
    local e = tpu.explain(l.port, "127.0.0.1")
    assert.are.equal("listening: " .. e.text .. "\n  tcp 127.0.0.1:" .. l.port .. " queue 0/9 user root\n", out)
    l.drain() -- (the probes' connections, never accepted: the queue counts them)
    out, rc = why("why [::1]:" .. l.port)
    assert.are.equal(1, rc, out)
    assert.matches("^other%-family: .* listens on 127%.0%.0%.1:" .. l.port .. " only; nothing on %[::1%]:" ..
      l.port .. "\n  tcp 127%.0%.0%.1:" .. l.port .. " queue 0/9 pid %d+ %(", out)
    -- (the lowest pid holding it: the CLI's own shell inherits the spec's
    -- socket, and may have the lower pid once pids wrap)
    out, rc = why("why 127.0.0.1:" .. l.port .. " --udp")
    assert.are.equal(1, rc, out)
    assert.matches("^other%-proto: ", out)
    l.close()
    assert.are.equal(2, select(2, why("why")))
    assert.are.equal(2, select(2, why("why 127.0.0.1:0")))
    assert.are.equal(2, select(2, why("why 1 2")))
  end)

  it("wait-used prints the explanation when it times out", function()
    local r = H.reserve()
    local out, rc = why("wait-used 127.0.0.1:" .. r.port .. " --timeout 200ms")
    assert.are.equal(1, rc)
    assert.matches("timed out after %d+ ms waiting for 127%.0%.0%.1:" .. r.port .. " to be in use: " ..
      "nothing listens on port " .. r.port .. " on this machine\n$", out)
    r.close()
  end)
end)
