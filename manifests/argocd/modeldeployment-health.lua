-- Argo CD health of a modelops.dev ModelDeployment (resource.customizations.health.modelops.dev_ModelDeployment).
-- Reads only status.observedGeneration, status.conditions and status.rollout.state, which the operator writes.
local hs = {}
local function conditions(o)
  local out = {}
  if o.status ~= nil and o.status.conditions ~= nil then
    for _, c in ipairs(o.status.conditions) do out[c.type] = c end
  end
  return out
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelops operator to report"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
local c = conditions(obj)
if c.Accepted ~= nil and c.Accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = c.Accepted.message or "The spec was not accepted"
  return hs
end
local rollout = obj.status.rollout
if rollout ~= nil then
  local where = ""
  if obj.status.canary ~= nil and obj.status.canary.version ~= nil then
    where = "canary version " .. obj.status.canary.version .. " at " .. tostring(rollout.weight or 0) .. "%: "
  end
  if rollout.state == "Paused" then
    hs.status = "Suspended"
    hs.message = where .. (rollout.message or "paused")
  elseif rollout.state == "AwaitingApproval" then
    hs.status = "Suspended"
    hs.message = where .. (rollout.message or "waiting for approval")
  elseif rollout.state == "RollingBack" then
    hs.status = "Degraded"
    hs.message = "Rolling back: " .. (rollout.message or "")
  else
    hs.status = "Progressing"
    local p = c.Progressing
    hs.message = where .. ((p ~= nil and p.message) or rollout.message or "")
  end
  return hs
end
if c.Ready ~= nil and c.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = c.Ready.message or "Serving"
  return hs
end
if c.Ready ~= nil and c.Ready.status == "False" and c.Ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = c.Ready.message or "Invalid spec"
  return hs
end
if c.ModelResolved ~= nil and c.ModelResolved.status == "False" then
  hs.status = "Degraded"
  hs.message = c.ModelResolved.message or "The model could not be resolved"
  return hs
end
if c.InferenceServiceReady ~= nil and c.InferenceServiceReady.status == "False" and
    c.InferenceServiceReady.reason ~= "NotReady" then
  hs.status = "Degraded"
  hs.message = c.InferenceServiceReady.message or "The InferenceService cannot be applied"
  return hs
end
hs.status = "Progressing"
hs.message = (c.Ready ~= nil and c.Ready.message) or "Waiting for the InferenceService to become ready"
return hs
