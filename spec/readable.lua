--- What the servers and processes that the specs start as other users
-- read from this checkout (nginx's workers, a Lua child run as nobody),
-- copied into a directory that any user may read: a checkout in a 0700
-- directory (/root in a container) is closed to them
-- (scripts/test-0700.sh proves it).
local lfs = require "lfs"
local H = require "helpers"

local R = {}

-- The directory of the runtime's core, from H.cpath (".../build/5.4/?.so").
local function core_dir()
  local dir = H.cpath:gsub(";.*$", ""):match("^(.*)/%?%.so$")
  if dir and dir:sub(1, 1) ~= "/" then dir = H.root .. "/" .. dir end
  return dir
end

local function copy_file(from, to)
  local f = assert(io.open(from, "rb"))
  local data = f:read("*a")
  f:close()
  local out = assert(io.open(to, "wb"))
  out:write(data)
  out:close()
end

-- Copies the files of directory from (recursively, or only those that
-- keep(name) accepts) into to. In Lua, not cp, and no more than is read:
-- nginx's start waits for it, and ngx_spec times what happens after.
local function copy_dir(from, to, keep)
  assert(lfs.mkdir(to) or lfs.attributes(to, "mode") == "directory", to)
  for name in lfs.dir(from) do
    if name ~= "." and name ~= ".." then
      local path = from .. "/" .. name
      local mode = lfs.attributes(path, "mode")
      if mode == "directory" and not keep then
        copy_dir(path, to .. "/" .. name)
      elseif mode == "file" and (not keep or keep(name)) then
        copy_file(path, to .. "/" .. name)
      end
    end
  end
end

-- The specs' helper modules (spec/calls.lua for nginx's probe app), not
-- the specs.
local function helper_module(name)
  return name:match("%.lua$") and not name:match("_spec%.lua$")
end

--- Copies the module's Lua files, the specs' helper modules, spec/nginx's
-- apps, nginx's core (build/jit) and this runtime's core
-- into dir/tree, readable by all, and opens dir to all; returns the
-- copy's root and the package.cpath entry of this runtime's core there.
-- The copy goes when dir does.
function R.tree(dir)
  local tree = dir .. "/tree"
  assert(lfs.mkdir(tree))
  copy_dir(H.root .. "/lua", tree .. "/lua")
  copy_dir(H.root .. "/spec", tree .. "/spec", helper_module)
  copy_dir(H.root .. "/spec/nginx", tree .. "/spec/nginx")
  assert(lfs.mkdir(tree .. "/build"))
  local own = core_dir()
  for _, from in ipairs { H.root .. "/build/jit", own } do
    local to = tree .. "/build/" .. from:match("[^/]+$")
    if lfs.attributes(from, "mode") == "directory" and not lfs.attributes(to) then
      copy_dir(from, to)
    end
  end
  -- (files and directories made under a umask that closes them)
  local out, rc = H.run("chmod -R a+rX " .. H.quote(tree) .. " && chmod a+rx " .. H.quote(dir) ..
    " 2>&1")
  assert(rc == 0, "opening the copy at " .. tree .. " failed: " .. tostring(out))
  return tree, tree .. "/build/" .. (own and own:match("[^/]+$") or "jit") .. "/?.so"
end

return R
