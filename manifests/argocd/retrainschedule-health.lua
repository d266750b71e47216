-- Argo CD health of a modelops.dev RetrainSchedule (resource.customizations.health.modelops.dev_RetrainSchedule).
-- A schedule is Healthy while it is accepted and its last run did not fail; Suspended when spec.suspend is
-- set or a run waits for approval; Progressing while a training Job runs.
local hs = {}
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
local c = {}
for _, cond in ipairs(obj.status.conditions) do c[cond.type] = cond end
if c.Accepted ~= nil and c.Accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = c.Accepted.message or "The spec was not accepted"
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended: no scheduled or drift-triggered runs"
  return hs
end
local last = obj.status.lastRun
if last ~= nil then
  local what = "run " .. tostring(last.id or "") .. " (" .. tostring(last.trigger or "") .. "): "
  if last.state == "Failed" then
    hs.status = "Degraded"
    hs.message = what .. (last.message or "the training Job failed")
    return hs
  elseif last.state == "AwaitingApproval" then
    hs.status = "Suspended"
    hs.message = what .. "version " .. tostring(last.version or "?") .. " waits for approval"
    return hs
  elseif last.state == "Pending" or last.state == "Running" then
    hs.status = "Progressing"
    hs.message = what .. last.state
    return hs
  end
end
if c.Ready ~= nil and c.Ready.status == "False" then
  hs.status = "Degraded"
  hs.message = c.Ready.message or "Not ready"
  return hs
end
hs.status = "Healthy"
hs.message = (c.Ready ~= nil and c.Ready.message) or "Scheduled"
return hs
