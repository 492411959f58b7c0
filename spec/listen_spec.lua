local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local listen = require "tcp_port_used.listen"
local socket = require "socket"
local H = require "helpers"

local has_ipv6 = core.ipv6()

local function check(port, host, mode)
  return tpu.check { port = port, host = host, mode = mode or "listen" }
end

-- A [::] listener, dual-stack or V6ONLY.
local function listen_any6(v6only)
  local s = assert(socket.tcp6())
  assert(s:setoption("ipv6-v6only", v6only))
  assert(s:setoption("reuseaddr", true))
  assert(s:bind("::", 0))
  assert(s:listen(32))
  local _, p = s:getsockname()
  return { port = tonumber(p), close = function() s:close() end }
end

-- Every backend answers the same questions.
for _, backend in ipairs(H.listen_backends) do
  describe("mode listen (" .. backend .. ")", function()
    setup(function() listen.backend(backend) end)
    teardown(function() listen.backend(false) end)

    local function agree(port, host, want)
      assert.are.equal(want, check(port, host, "connect"), "connect mode, host " .. tostring(host))
      assert.are.equal(want, check(port, host), "listen mode, host " .. tostring(host))
    end

    it("agrees with connect mode on open and refused loopback ports", function()
      local l, r = H.listen("127.0.0.1"), H.reserve("127.0.0.1")
      agree(l.port, nil, true)
      agree(l.port, "127.0.0.1", true)
      agree(l.port, "localhost", true)
      agree(r.port, nil, false)
      agree(r.port, "127.0.0.1", false)
      l.close()
      agree(l.port, nil, false)
      r.close()
    end)

    it("counts a wildcard listener for the loopback", function()
      local l = H.listen("0.0.0.0")
      agree(l.port, nil, true)
      agree(l.port, "127.0.0.1", true)
      agree(l.port, "0.0.0.0", true)
      l.close()
    end)

    it("reports a port that is bound but not listening as free", function()
      local r = H.reserve("127.0.0.1")
      assert.is_false(check(r.port))
      assert.is_false(check(r.port, "*"))
      assert.is_true(tpu.check { port = r.port, host = "127.0.0.1", mode = "bind" })
      r.close()
    end)

    describe("on IPv6", function()
      if not has_ipv6 then
        pending("this machine has no IPv6")
        return
      end
      it("answers for ::1, and for ::1 when host is omitted", function()
        local l6 = H.listen("::1")
        agree(l6.port, "::1", true)
        agree(l6.port, "[::1]", true)
        agree(l6.port, nil, true)
        agree(l6.port, "127.0.0.1", false)
        l6.close()
      end)
      it("counts a dual-stack [::] listener for 127.0.0.1, a V6ONLY one not", function()
        local dual, only = listen_any6(false), listen_any6(true)
        agree(dual.port, "127.0.0.1", true)
        agree(dual.port, "::1", true)
        agree(only.port, "127.0.0.1", false)
        agree(only.port, "::1", true)
        agree(only.port, nil, true)
        dual.close()
        only.close()
      end)
    end)

    it("with host '*' sees a listener on any local address", function()
      local l = H.listen("127.0.0.2")
      assert.is_false(check(l.port))
      assert.is_true(check(l.port, "127.0.0.2"))
      assert.is_true(check(l.port, "*"))
      l.close()
      assert.is_false(check(l.port, "*"))
    end)

    it("refuses a host that is not an address of this machine, and a wait stops at once", function()
      local l = H.listen("0.0.0.0")
      -- 192.0.2.1 (TEST-NET-1) is never local; a wildcard listener must
      -- not make it look in use
      local ok, err, code = check(l.port, "192.0.2.1")
      assert.is_nil(ok)
      assert.matches("only for this machine", err)
      assert.are.equal("EADDRNOTAVAIL", code)
      local t0 = core.now()
      ok, err = tpu.wait_until_used { port = l.port, host = "192.0.2.1", mode = "listen", timeout_ms = 5000 }
      assert.is_nil(ok)
      assert.matches("only for this machine", err)
      assert.is_true(core.now() - t0 < 1000)
      l.close()
    end)

    it("waits until a child process listens, and until it stops", function()
      local port = H.free_port()
      local pid = H.listen_later(port, 0.2, 0.3)
      assert.is_true(tpu.wait_until_used { port = port, mode = "listen", timeout_ms = 10000 })
      assert.is_true(tpu.wait_until_free { port = port, mode = "listen", timeout_ms = 10000 })
      H.kill(pid)
    end)

    it("answers for many ports with one query per family", function()
      local a, b, r = H.listen("127.0.0.1"), H.listen("127.0.0.2"), H.reserve("127.0.0.1")
      local ports = { a.port, b.port, r.port }
      local used, errs = listen.check_many(ports, nil)
      assert.are.same({}, errs)
      assert.are.same({ [a.port] = true, [b.port] = false, [r.port] = false }, used)
      used = listen.check_many(ports, "*")
      assert.are.same({ [a.port] = true, [b.port] = true, [r.port] = false }, used)
      local none, err = listen.check_many(ports, "192.0.2.1")
      assert.is_nil(none)
      assert.matches("only for this machine", err)
      a.close()
      b.close()
      r.close()
    end)

    it("leaves no descriptor behind over thousands of checks", function()
      local l, r = H.listen("127.0.0.1"), H.reserve("127.0.0.1")
      local n = backend == "proc" and 50 or 3000
      check(l.port)
      local before = H.fd_count()
      for _ = 1, n do
        assert(check(l.port) == true)
        assert(check(r.port) == false)
        assert(check(l.port, "*") == true)
      end
      assert.are.equal(before, H.fd_count())
      l.close()
      r.close()
    end)
  end)
end

describe("listen backend", function()
  if H.portable then pending(H.NO_LISTEN_MODE) return end
  it("is netlink where the kernel answers, and TPU_LISTEN_BACKEND=proc forces /proc", function()
    local l = H.listen()
    assert.is_true(check(l.port))
    l.close()
    local here = listen.backend()
    local code = "local tpu = require 'tcp_port_used'; local l = require('helpers').listen();" ..
      " io.write(tostring(tpu.check{ port = l.port, mode = 'listen' }), ' '," ..
      " require('tcp_port_used.listen').backend())"
    local out = H.run(H.lua_cmd(code))
    assert.are.equal("true " .. here, out)
    out = H.run("TPU_LISTEN_BACKEND=proc " .. H.lua_cmd(code))
    assert.are.equal("true proc", out)
  end)
end)

-- Replies built here, fed to the C parser: whatever the bytes, it returns
-- an error or a list, never reads past them, and never answers "free" for
-- a reply it could not read. (Little-endian hosts: the netlink headers
-- are in host order.)
describe("the netlink reply parser", function()
  if H.portable then pending(H.NO_LISTEN_MODE) return end
  local char = string.char
  local function u16(n) return char(n % 256, math.floor(n / 256) % 256) end
  local function u32(n)
    if n < 0 then n = n + 2 ^ 32 end
    return u16(n % 65536) .. u16(math.floor(n / 65536))
  end
  local function be16(n) return char(math.floor(n / 256), n % 256) end
  local SEQ = 7

  local function nlmsg(typ, flags, body, len)
    return u32(len or 16 + #body) .. u16(typ) .. u16(flags) .. u32(SEQ) .. u32(0) .. body
  end
  -- inet_diag_msg for a listener on 127.0.0.1:port, plus attributes
  local function diag(port, attrs, state, family)
    return char(family or 2, state or 10, 0, 0) .. be16(port) .. be16(0)
      .. char(127, 0, 0, 1) .. string.rep("\0", 12) .. string.rep("\0", 16)
      .. u32(0) .. u32(0xffffffff) .. u32(0xffffffff)
      .. u32(0) .. u32(3) .. u32(128) .. u32(1000) .. u32(4242) .. (attrs or "")
  end
  local v6only_attr = u16(5) .. u16(11) .. char(1, 0, 0, 0)
  local one = nlmsg(20, 2, diag(8080, v6only_attr))
  local done = nlmsg(3, 2, u32(0))

  it("reads a well-formed dump and an exact reply", function()
    local ls, state = core.listen_parse(one .. one .. done, SEQ, true)
    assert.are.equal("done", state)
    assert.are.equal(2, #ls)
    -- (a TCP listener's accept queue and backlog: idiag_rqueue, idiag_wqueue)
    assert.are.same({ family = "inet", address = "127.0.0.1", port = 8080, uid = 1000, inode = 4242,
                      v6only = false, queue = 3, backlog = 128 }, ls[1])
    ls, state = core.listen_parse(one, SEQ, false)
    assert.are.equal("done", state)
    assert.are.equal(1, #ls)
    assert.are.equal("more", select(2, core.listen_parse(one, SEQ, true)))
  end)

  it("keeps the sockets that listen in each protocol's terms: LISTEN for TCP, CLOSE for UDP", function()
    local unconnected = nlmsg(20, 2, diag(27015, nil, 7))
    local connected = nlmsg(20, 2, diag(27015, nil, 1))
    assert.are.equal(1, #core.listen_parse(unconnected, SEQ, false, "udp"))
    -- a UDP socket has no accept queue: its receive queue is not one
    assert.is_nil(core.listen_parse(unconnected, SEQ, false, "udp")[1].queue)
    assert.are.equal(0, #core.listen_parse(connected, SEQ, false, "udp"))
    assert.are.equal(0, #core.listen_parse(one, SEQ, false, "udp"))
    assert.are.equal(0, #core.listen_parse(unconnected, SEQ, false))
    assert.are.equal(1, #core.listen_parse(one, SEQ, false, "tcp"))
  end)

  it("passes on the kernel's error", function()
    local err = nlmsg(2, 0, u32(-2) .. nlmsg(20, 1, ""))
    assert.are.same({ nil, "ENOENT" }, { core.listen_parse(err, SEQ, false) })
  end)

  it("rejects every truncation of a reply", function()
    for n = 0, #one - 1 do
      local ls, code = core.listen_parse(one:sub(1, n), SEQ, false)
      assert.is_nil(ls, "exact reply cut to " .. n .. " bytes")
      assert.are.equal("EBADMSG", code)
    end
    -- a dump may end between messages (the next datagram goes on), never
    -- inside one
    local whole = one .. done
    for n = 1, #whole - 1 do
      local ls = core.listen_parse(whole:sub(1, n), SEQ, true)
      if n ~= #one then assert.is_nil(ls, "dump cut to " .. n .. " bytes") end
    end
  end)

  it("rejects lengths that point past the reply, a wrong sequence, unknown types", function()
    local cases = {
      nlmsg(20, 2, diag(80), 16 + 72 + 1),          -- nlmsg_len past the end
      nlmsg(20, 2, diag(80), 15),                    -- nlmsg_len below its header
      nlmsg(20, 2, diag(80, u16(200) .. u16(11) .. char(1, 0, 0, 0))), -- attribute past the end
      nlmsg(20, 2, diag(80, u16(2) .. u16(11))),     -- attribute below its header
      nlmsg(20, 2, diag(80, u16(5))),                -- attribute header cut
      nlmsg(20, 2, diag(80):sub(1, 71)),             -- inet_diag_msg cut
      nlmsg(20, 2, diag(80, nil, 10, 99)),           -- unknown family
      nlmsg(99, 2, diag(80)),                        -- unknown message type
      nlmsg(2, 0, u32(5) .. string.rep("\0", 16)),   -- positive "error"
      nlmsg(2, 0, u32(-2)),                          -- nlmsgerr cut
      u32(16 + 72) .. u16(20) .. u16(2) .. u32(SEQ + 1) .. u32(0) .. diag(80), -- another request's reply
    }
    for i, bytes in ipairs(cases) do
      local ls, code = core.listen_parse(bytes, SEQ, false)
      assert.is_nil(ls, "case " .. i)
      assert.are.equal("EBADMSG", code, "case " .. i)
    end
  end)

  it("rejects an oversized reply", function()
    local big = string.rep(one, math.floor(32768 / #one) + 1)
    assert.are.same({ nil, "EMSGSIZE" },
      { core.listen_parse(big, SEQ, true) })
  end)

  -- Whatever the bytes: a list and "done" or "more", or nil and a code;
  -- each listener well formed. The corpus must hit both outcomes, or it
  -- proves nothing about either.
  it("answers random corruption only in the documented shapes", function()
    local whole = one .. one .. done
    local seed = 12345
    -- (the high bits: the low bits of this generator alternate)
    local function rand(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return math.floor(seed / 65536) % n
    end
    local FIELDS = { family = "string", address = "string", port = "number", uid = "number",
                     inode = "number", v6only = "boolean", queue = "number", backlog = "number" }
    local pack = require("tcp_port_used.pack").pack
    local seen = { rejected = 0 }
    for i = 1, 3000 do
      local b = { whole:byte(1, -1) }
      for _ = 1, 1 + rand(4) do
        b[1 + rand(#b)] = rand(256)
      end
      -- cut short half the time
      local bytes = char((table.unpack or unpack)(b)):sub(1, rand(2) == 1 and #b or 1 + rand(#b))
      local r = pack(core.listen_parse(bytes, SEQ, rand(2) == 1))
      local case = "case " .. i
      assert.are.equal(2, r.n, case)
      local ls, state = r[1], r[2]
      if ls == nil then
        seen.rejected = seen.rejected + 1
        assert.matches("^E[%u%d_%-]+$", state, nil, nil, case)
      else
        assert.is_table(ls, case)
        assert.is_truthy(state == "done" or state == "more", case .. ": " .. tostring(state))
        seen[state] = (seen[state] or 0) + 1
        for k, e in ipairs(ls) do
          local where = case .. ", listener " .. k
          for f, v in pairs(e) do
            assert.are.equal(FIELDS[f], type(v), where .. ", field " .. tostring(f))
          end
          assert.is_truthy(e.family == "inet" or e.family == "inet6", where)
          assert.matches(e.family == "inet" and "^%d+%.%d+%.%d+%.%d+$" or ":", e.address, nil, nil, where)
          for _, f in ipairs { "port", "uid", "inode" } do
            assert.is_true(e[f] >= 0 and e[f] % 1 == 0, where .. ", " .. f)
          end
          assert.is_true(e.port <= 65535, where)
        end
      end
    end
    assert.is_true(seen.rejected > 0, "no corrupted reply was rejected")
    assert.is_true((seen.done or 0) > 0, "no corrupted reply was read to its end")
    assert.is_true((seen.more or 0) > 0, "no corrupted dump asked for more")
  end)
end)
