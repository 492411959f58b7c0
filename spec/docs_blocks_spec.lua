--- Every fenced code block of README.md and docs/*.md runs, so that none
-- can go stale (docs/reliability.md, "Writing docs", says the same for
-- writers).
--
-- Languages:
--   ```lua   a chunk run by a fresh interpreter of the runtime under test
--            (TPU_LUA), package paths at the checkout's lua/ and the build
--            dir (TPU_CPATH); it fails the spec when it exits non-zero.
--   ```sh    run by sh, with `tcp-port-used` on PATH meaning the
--            checkout's bin/tcp-port-used on TPU_LUA; it fails the spec
--            when a tcp-port-used in it exits 2 or more (usage error,
--            failure to probe: exit 1 is an answer, "free" or "timed
--            out") or when sh itself ends with 2 or more (syntax error,
--            command not found). LUA_PATH, LUA_CPATH and LUA_CPATH_5_x
--            point at the checkout, so `lua5.4 -e 'require "tcp_port_used"'`
--            works in a block as after `luarocks make`.
--   any other language (nginx, ini, text, or none) is not run, but for
--   an ```nginx block with a run directive (below).
--
-- A block may be preceded (on the line before its fence) by an HTML
-- comment that says what it needs, as `;`-separated directives:
--   <!-- run: listen 8080 6379 -->  a real TCP listener (dual-stack when
--        the machine has IPv6) on a port picked at run time for each
--        literal port; every occurrence of the literal in the block is
--        replaced by the picked port.
--   <!-- run: udp 27015 -->          a UDP socket bound on 0.0.0.0 (a game
--        server's), likewise.
--   <!-- run: free 8080 -->          the literal becomes a port that was
--        free a moment ago.
--   <!-- run: http 8080 -->          a real nginx: /healthz says 503,
--        every other path 200; `redis 6379` a real redis-server;
--        several literals after one server all become its port;
--        `postgres 5432` a real PostgreSQL 15 cluster (trust), whose
--        socket directory also replaces "/run/postgresql" in the block.
--        Where a server cannot start, the block is pending with the reason.
--        Each server is started once for the file and shared by the blocks.
--   <!-- run: module luv -->         pending where the runtime under test
--        cannot require that module.
--   <!-- run: nvim -->               a ```lua block run inside a real headless
--        Neovim (nvim --headless -u NONE, its LuaJIT and the jit build),
--        whatever the runtime under test.
--   <!-- run: nginx 18080 /ready --> an ```nginx block is a whole nginx.conf:
--        run by a real nginx (Debian's, with lua-nginx-module) with
--        /path/to/tcp-port-used meaning a copy of the checkout's lua/ and
--        build/jit, the literal (its `listen 127.0.0.1:` port) a free
--        port; passes when GET of the path there answers 200.
--   <!-- run: linux -->              pending on the portable build (listen
--        mode and owner answer ENOTSUP there, as on macOS and the BSDs).
--   <!-- run: needs runuser /usr/sbin/nginx --> pending unless each is a
--        program here.
--   <!-- run: checkout -->           the block runs in the checkout's root
--        (examples of running from a checkout), not in a temp dir, and
--        without the LUA_PATH/LUA_CPATH that other sh blocks get.
--   <!-- run: cmd ./serve ./start-app --> executables that exit 0, made in
--        the block's working directory (a fresh temp dir), for examples
--        that exec a program once ready.
--   <!-- run: skip: reason -->       pending, with the reason (never passed).
local H = require "helpers"
local S = require "servers"

local ROOT = H.root

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then os.execute("chmod " .. mode .. " " .. H.quote(path)) end
end

local RUN = { lua = true, sh = true }

--- The fenced blocks of one Markdown file: { lang, code, line, run } where
-- line is the fence's line number and run the directive text or nil.
local function blocks(path)
  local found, cur, prev = {}, nil, nil
  local n = 0
  for line in (slurp(path) .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    if cur then
      if line:match("^%s*```%s*$") then
        found[#found + 1], cur = cur, nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    else
      local lang = line:match("^%s*```%s*([%w_+-]*)")
      if lang then
        cur = { lang = lang, lines = {}, line = n, run = prev and prev:match("^%s*<!%-%-%s*run:%s*(.-)%s*%-%->") }
      end
    end
    prev = line
  end
  assert(not cur, path .. ":" .. (cur and cur.line or 0) .. ": a code block is not closed")
  for _, b in ipairs(found) do b.code = table.concat(b.lines, "\n") .. "\n" end
  return found
end

local function files()
  local list = { "README.md" }
  local p = assert(io.popen("ls " .. H.quote(ROOT .. "/docs") .. "/*.md 2>/dev/null"))
  for f in p:lines() do list[#list + 1] = "docs/" .. f:match("([^/]+)$") end
  p:close()
  return list
end

--- Directive text -> list of { word, args } (skip keeps its reason whole).
local function directives(text)
  local list = {}
  for part in (text or ""):gmatch("[^;]+") do
    local word, rest = part:match("^%s*([%w_-]+):?%s*(.-)%s*$")
    assert(word, "a run directive without a word: " .. part)
    local args = {}
    if word == "skip" then args[1] = rest else
      for a in rest:gmatch("%S+") do args[#args + 1] = a end
    end
    list[#list + 1] = { word = word, args = args }
  end
  return list
end

local HTTP_CONF = [[
worker_processes 1;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  server {
    listen 127.0.0.1:${PORT};
    location = /healthz { return 503; }
    location / { return 200 "ok\n"; }
  }
}
]]

-- The servers blocks ask for, each started once for the whole file (no
-- block changes a server's state) and stopped after the last block.
local SERVERS = {
  http = { start = function() return S.nginx_start(HTTP_CONF) end, stop = S.nginx_stop },
  redis = { start = function() return S.redis_start() end, stop = S.redis_stop },
  postgres = {
    start = function()
      local pg, why = S.pg_init("docpg")
      if pg then pg, why = S.pg_start(pg) end
      return pg, why
    end,
    stop = S.pg_stop,
  },
}
local running = {}

--- The running server of that kind, or nil and why it cannot start here
-- (asked once: a server that could not start is not tried again).
local function server(kind)
  if not running[kind] then
    local srv, why = SERVERS[kind].start()
    running[kind] = { srv = srv, why = why }
  end
  return running[kind].srv, running[kind].why
end

local function stop_servers()
  for kind, r in pairs(running) do
    if r.srv then SERVERS[kind].stop(r.srv) end
    running[kind] = nil
  end
end

local function listener()
  local ok, l = pcall(H.listen, "::", 0, 128, false)
  if not ok then l = H.listen("127.0.0.1", 0, 128) end
  return l.port, l.close
end

-- Names a block may look up: anything else would send DNS off the machine.
local LOCAL_NAMES = { localhost = true, ["127.0.0.1"] = true, ["::1"] = true, ["[::1]"] = true, ["*"] = true }

--- The first host name in code that is not this machine's, or nil.
local function foreign_name(code)
  local names = {}
  for _, pat in ipairs { "host%s*=%s*[\"']([^\"']+)[\"']", "%f[%w]([%a][%w%.%-]*):%d+" } do
    for name in code:gmatch(pat) do names[#names + 1] = name end
  end
  -- a URL's host comes after its userinfo (user:password@), if any
  for authority in code:gmatch("://([^/%s\"'#?]*)") do
    names[#names + 1] = authority:gsub("^.*@", ""):match("^([%a][%w%.%-]*)")
  end
  for _, name in ipairs(names) do
    if not LOCAL_NAMES[name] and not name:match("^[%d%.]+$") then return name end
  end
end

--- Sets up what the directives ask for. Returns the block's text with
-- its literals replaced, the working directory and a list of cleanups,
-- or nil and the reason it cannot run here.
local function prepare(block, cleanups)
  local code = block.code
  local name = foreign_name(code)
  if name and not (block.run or ""):match("^%s*skip") then
    error("the block names the host '" .. name .. "': a lookup would leave the machine;" ..
      " use 127.0.0.1 or mark it <!-- run: skip: why -->", 0)
  end
  local dir = S.tmpdir("docblock")
  cleanups[#cleanups + 1] = function() H.run("rm -rf " .. H.quote(dir)) end
  local subst = {}
  for _, d in ipairs(directives(block.run)) do
    local w, a = d.word, d.args
    if w == "skip" then
      return nil, "skip: " .. (a[1] ~= "" and a[1] or "no reason given")
    elseif w == "listen" then
      for _, lit in ipairs(a) do
        local port, close = listener()
        cleanups[#cleanups + 1] = close
        subst[lit] = port
      end
    elseif w == "udp" then
      for _, lit in ipairs(a) do
        local u = H.udp("0.0.0.0")
        cleanups[#cleanups + 1] = u.close
        subst[lit] = u.port
      end
    elseif w == "free" then
      for _, lit in ipairs(a) do subst[lit] = H.free_port() end
    elseif SERVERS[w] then
      local srv, why = server(w)
      if not srv then return nil, why end
      for _, lit in ipairs(a) do subst[lit] = srv.port end
      if w == "postgres" then code = code:gsub("/run/postgresql", function() return srv.dir end) end
    elseif w == "module" then
      local _, rc = H.run(H.lua_exec() .. " -e " .. H.quote("require " .. string.format("%q", a[1])) ..
        " >/dev/null 2>&1")
      if rc ~= 0 then return nil, a[1] .. " cannot be required on " .. H.lua end
    elseif w == "linux" then
      if H.portable then return nil, "the portable build has no listen mode or owner (ENOTSUP)" end
    elseif w == "needs" then
      for _, prog in ipairs(a) do
        local _, rc = H.run("command -v " .. H.quote(prog) .. " >/dev/null 2>&1")
        if rc ~= 0 then return nil, "needs " .. prog end
      end
    elseif w == "nvim" then
      local _, rc = H.run("command -v nvim >/dev/null 2>&1")
      if rc ~= 0 then return nil, "nvim is not installed" end
      block.nvim = true
    elseif w == "nginx" then
      if block.lang ~= "nginx" then error("run: nginx is for an nginx.conf (```nginx) block", 0) end
      local missing = require("ngxrun").missing()
      if missing then return nil, "needs " .. missing end
      subst[a[1]] = H.free_port()
      block.nginx = { port_literal = a[1], path = a[2] or "/" }
    elseif w == "checkout" then
      block.cwd = ROOT
    elseif w == "cmd" then
      for _, exe in ipairs(a) do write(dir .. "/" .. exe:gsub("^%./", ""), "#!/bin/sh\nexit 0\n", "755") end
    else
      error("unknown run directive '" .. w .. "'")
    end
  end
  for lit, port in pairs(subst) do
    code = code:gsub("%f[%d]" .. lit .. "%f[%D]", tostring(port))
  end
  return code, dir
end

local PATHS = string.format("package.path = %q .. package.path; package.cpath = %q .. package.cpath",
  ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;", H.cpath .. ";")

-- Runs the block; returns its exit status and output (stdout and stderr).
local function execute(block, code, dir)
  local timeout = "timeout -k 5 120 "
  local cd = "cd " .. H.quote(block.cwd or dir) .. " && "
  if block.nginx then
    -- the workers (user nobody) read the module from a copy in the prefix,
    -- which a checkout in a 0700 home would not allow
    local port = assert(tonumber(code:match("listen%s+127%.0%.0%.1:(%d+)")), "the conf listens on no 127.0.0.1 port")
    H.run("mkdir -p " .. dir .. "/logs " .. dir .. "/tpu/build && cp -r " .. H.quote(ROOT .. "/lua") .. " " ..
      dir .. "/tpu/ && cp -r " .. H.quote(ROOT .. "/build/jit") .. " " .. dir .. "/tpu/build/ && chmod -R a+rX " .. dir)
    write(dir .. "/nginx.conf", (code:gsub("/path/to/tcp%-port%-used", function() return dir .. "/tpu" end)))
    local spawned = H.spawn(string.format("exec /usr/sbin/nginx -p %s/ -c %s/nginx.conf -e %s/logs/error.log" ..
      " -g 'daemon off; pid %s/logs/nginx.pid;' 2>%s/stderr.log", dir, dir, dir, dir, dir))
    local tpu = require "tcp_port_used"
    local up = tpu.wait_until_used { port = port, host = "127.0.0.1", mode = H.quiet_mode, timeout_ms = 40000 }
    local rc, out = 1, "nginx did not listen on " .. port .. "\n"
    if up then
      local c = require("socket").tcp()
      c:settimeout(30)
      assert(c:connect("127.0.0.1", port))
      c:send("GET " .. block.nginx.path .. " HTTP/1.0\r\nHost: docs\r\n\r\n")
      local reply = c:receive("*a") or ""
      c:close()
      out = reply
      rc = reply:match("^HTTP/1%.%d 200 ") and 0 or 1
    end
    local pid = tonumber(H.slurp(dir .. "/logs/nginx.pid"))
    if pid then
      H.run("kill -QUIT " .. pid)
      S.await(20000, function() return select(2, H.run("kill -0 " .. pid .. " 2>/dev/null")) ~= 0 end)
    end
    H.kill(spawned)
    return rc, out .. H.slurp(dir .. "/stderr.log") .. H.slurp(dir .. "/logs/error.log")
  end
  if block.lang == "lua" and block.nvim then
    -- Neovim's LuaJIT: the jit build; an error must end nvim with a status
    write(dir .. "/block.lua", code)
    write(dir .. "/run.lua", string.format([[
package.path = %q .. package.path
package.cpath = %q .. package.cpath
local ok, err = xpcall(function() dofile(%q) end, debug.traceback)
if not ok then io.stderr:write(err, "\n"); vim.cmd("cquit 3") end
]], ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;", ROOT .. "/build/jit/?.so;", dir .. "/block.lua"))
    return select(2, H.run(cd .. timeout .. "nvim --headless -u NONE -i NONE -c " ..
      H.quote("luafile " .. dir .. "/run.lua") .. " -c 'qa!' > " .. H.quote(dir .. "/out") ..
      " 2>&1 </dev/null")), slurp(dir .. "/out")
  end
  if block.lang == "lua" then
    write(dir .. "/block.lua", code)
    return select(2, H.run(cd .. timeout .. H.lua_exec() .. " -e " .. H.quote(PATHS) .. " " ..
      H.quote(dir .. "/block.lua") .. " > " .. H.quote(dir .. "/out") .. " 2>&1")), slurp(dir .. "/out")
  end
  -- sh: tcp-port-used is the checkout's, on this runtime; calls that end
  -- with 2 or more are noted in a file the runner reads. The Luas the
  -- block names find the module as after `luarocks make`.
  os.execute("mkdir -p " .. H.quote(dir .. "/bin"))
  write(dir .. "/bin/tcp-port-used", string.format([[#!/bin/sh
%s %q "$@"
rc=$?
[ "$rc" -ge 2 ] && echo "tcp-port-used $* exited $rc" >> %q
exit $rc
]], H.lua_exec(), ROOT .. "/bin/tcp-port-used", dir .. "/errors"), "755")
  local env = { "LUA_PATH=" .. H.quote(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
                "LUA_CPATH=" .. H.quote(H.cpath .. ";;") }
  -- a block run from the checkout shows what works there with no path set
  if block.cwd then env = {} end
  for _, v in ipairs(block.cwd and {} or { "5.2", "5.3", "5.4" }) do
    env[#env + 1] = "LUA_CPATH_" .. v:gsub("%.", "_") .. "=" .. H.quote(ROOT .. "/build/" .. v .. "/?.so;;")
  end
  write(dir .. "/block.sh", code)
  local _, rc = H.run(cd .. "PATH=" .. H.quote(dir .. "/bin") .. ":$PATH " .. table.concat(env, " ") ..
    " " .. timeout .. "sh " ..
    H.quote(dir .. "/block.sh") .. " > " .. H.quote(dir .. "/out") .. " 2>&1")
  local out = slurp(dir .. "/out")
  local f = io.open(dir .. "/errors")
  if f then
    out = out .. f:read("*a")
    f:close()
    if rc < 2 then rc = 2 end
  elseif out:find("stack traceback:", 1, true) then
    -- a Lua error (a module not found, a crash) exits 1 too: never an answer
    if rc < 2 then rc = 2 end
  elseif rc == 1 then
    rc = 0 -- an answer ("free", "timed out"), not an error
  end
  return rc, out
end

local function runnable(block)
  return RUN[block.lang] or (block.run ~= nil and block.lang == "nginx")
end

--- Runs one block with what its directives ask for; returns "ok",
-- "pending" and why, or "failed" and what it printed.
local function run(block, where)
  local cleanups = {}
  local ok, status, detail = pcall(function()
    local code, dir_or_why = prepare(block, cleanups)
    if not code then return "pending", where .. ": " .. dir_or_why end
    local rc, out = execute(block, code, dir_or_why)
    if rc ~= 0 then
      return "failed", where .. ": the " .. block.lang .. " block exited " .. tostring(rc) .. ":\n" .. out
    end
    return "ok"
  end)
  for i = #cleanups, 1, -1 do cleanups[i]() end
  if not ok then error(status, 0) end
  return status, detail
end

describe("the code blocks of the docs", function()
  teardown(stop_servers)
  for _, file in ipairs(files()) do
    for _, block in ipairs(blocks(ROOT .. "/" .. file)) do
      if runnable(block) then
        local where = file .. ":" .. block.line
        it("run: " .. where .. " (" .. block.lang .. ")", function()
          local status, detail = run(block, where)
          if status == "pending" then return pending(detail) end
          assert(status == "ok", detail)
        end)
      end
    end
  end
end)

-- The runner itself: it finds the blocks, and it can fail.
describe("the docs block runner", function()
  local function md(text)
    local path = os.tmpname()
    write(path, text)
    local found = blocks(path)
    os.remove(path)
    return found
  end

  it("finds the README's blocks and their directives, and ignores other languages", function()
    local found = md("x\n<!-- run: listen 5432; free 8080 -->\n```lua\nprint(1)\n```\n" ..
      "```nginx\nevents {}\n```\n```sh\necho\n```\n")
    assert.same({ "lua", "nginx", "sh" }, { found[1].lang, found[2].lang, found[3].lang })
    assert.same({ 3, 6, 9 }, { found[1].line, found[2].line, found[3].line })
    assert.equal("listen 5432; free 8080", found[1].run)
    assert.equal("print(1)\n", found[1].code)
    assert.is_false(runnable(found[2]))
    local n = 0
    for _, b in ipairs(blocks(ROOT .. "/README.md")) do if runnable(b) then n = n + 1 end end
    assert.is_true(n >= 5, "README.md has " .. n .. " runnable blocks")
  end)

  it("fails a lua block that errors, naming file and line", function()
    local status, detail = run(md("```lua\nerror('stale example')\n```\n")[1], "doc.md:1")
    assert.equal("failed", status)
    assert.truthy(detail:find("doc.md:1: the lua block exited 1", 1, true), detail)
    assert.truthy(detail:find("stale example", 1, true), detail)
  end)

  it("replaces literal ports with real listeners", function()
    local b = md("<!-- run: listen 5432 -->\n```lua\nassert(require('tcp_port_used').check(5432) == true)\n```\n")[1]
    assert.equal("ok", (run(b, "doc.md:2")))
    b = md("```lua\nassert(require('tcp_port_used').check(5432) == true)\n```\n")[1]
    b.code = b.code:gsub("5432", tostring(H.free_port()))
    assert.equal("failed", (run(b, "doc.md:1")))
  end)

  it("counts tcp-port-used's exit 1 as an answer and exit 2 as a failure", function()
    local free = md("<!-- run: free 8080 -->\n```sh\ntcp-port-used check 8080\n```\n")[1]
    assert.equal("ok", (run(free, "doc.md:2")))
    local bad = md("```sh\ntcp-port-used check 0\necho still here\n```\n")[1]
    local status, detail = run(bad, "doc.md:1")
    assert.equal("failed", status)
    assert.truthy(detail:find("tcp-port-used check 0 exited 2", 1, true), detail)
    -- a Lua error exits 1 as "free" does, but is no answer
    local crash = md("```sh\n" .. H.lua_exec() .. " -e 'error(\"no module\")'\necho still here\n```\n")[1]
    status, detail = run(crash, "doc.md:1")
    assert.equal("failed", status)
    assert.truthy(detail:find("no module", 1, true), detail)
  end)

  it("reports skip and names of other machines as they are", function()
    local status, why = run(md("<!-- run: skip: stands for yours -->\n```sh\n./serve\n```\n")[1], "doc.md:2")
    assert.same({ "pending", "doc.md:2: skip: stands for yours" }, { status, why })
    assert.has_error(function()
      run(md("```sh\ntcp-port-used check db:5432\n```\n")[1], "doc.md:1")
    end, "the block names the host 'db': a lookup would leave the machine;" ..
      " use 127.0.0.1 or mark it <!-- run: skip: why -->")
    assert.has_error(function()
      run(md("```sh\ntcp-port-used check redis://:secret@cache/2\n```\n")[1], "doc.md:1")
    end, "the block names the host 'cache': a lookup would leave the machine;" ..
      " use 127.0.0.1 or mark it <!-- run: skip: why -->")
    assert.is_nil(foreign_name("redis://:secret@127.0.0.1:6379/2 postgres://app:pw@[::1]/db"))
  end)
end)
