locals {
  # Unity Catalog names are identifiers: underscores, no dashes.
  catalog_name  = replace(var.name_prefix, "-", "_")
  workspace_dir = "/Shared/${var.name_prefix}"

  groups = {
    data_engineers = "data-engineers"
    ml_engineers   = "ml-engineers"
    viewers        = "viewers"
  }
  memberships = merge([
    for group, users in var.group_members : {
      for user in users : "${group}/${user}" => { group = group, user = user }
    }
  ]...)

  # Unity Catalog grants name groups by display name and service principals by application ID.
  principals = merge(
    { pipeline = databricks_service_principal.pipeline.application_id },
    { for key, group in databricks_group.this : key => group.display_name },
  )

  # Azure roles of the pipeline identity: read/write the lake, read secrets, publish logs.
  pipeline_roles = {
    lake    = { scope = var.storage_account_id, role = "Storage Blob Data Contributor" }
    secrets = { scope = var.key_vault_id, role = "Key Vault Secrets User" }
    logs    = { scope = var.data_collection_rule_id, role = "Monitoring Metrics Publisher" }
  }

  schemas = {
    images     = "Raw and cleaned image tables."
    ml         = "Registered models and training checkpoints."
    monitoring = "Predictions, drift and explanation reports."
    ops        = "Dagster Pipes context and messages of Databricks job runs."
  }
  # External volumes give Unity Catalog paths to the landing, checkpoint and
  # report folders; the managed pipes volume carries Dagster Pipes traffic.
  volumes = {
    landing     = { schema = "images", location = var.storage_paths.landing }
    checkpoints = { schema = "ml", location = var.storage_paths.checkpoints }
    reports     = { schema = "monitoring", location = var.storage_paths.reports }
    pipes       = { schema = "ops", location = null }
  }

  # Privileges granted on each securable (they are inherited by what it contains).
  catalog_privileges = {
    pipeline       = ["USE_CATALOG", "USE_SCHEMA", "SELECT", "MODIFY", "CREATE_TABLE", "CREATE_MODEL", "EXECUTE", "READ_VOLUME", "WRITE_VOLUME"]
    data_engineers = ["USE_CATALOG", "USE_SCHEMA", "SELECT", "MODIFY", "CREATE_TABLE", "READ_VOLUME", "WRITE_VOLUME"]
    ml_engineers   = ["USE_CATALOG", "USE_SCHEMA", "SELECT", "READ_VOLUME"]
    viewers        = ["USE_CATALOG", "BROWSE"]
  }
  schema_privileges = {
    ml         = { ml_engineers = ["CREATE_MODEL", "CREATE_TABLE", "MODIFY", "EXECUTE"] }
    monitoring = { viewers = ["USE_SCHEMA", "SELECT"] }
  }
  volume_privileges = {
    checkpoints = { ml_engineers = ["WRITE_VOLUME"] }
    reports     = { viewers = ["READ_VOLUME"] }
  }
  external_location_privileges = {
    pipeline       = ["READ_FILES", "WRITE_FILES", "CREATE_EXTERNAL_VOLUME"]
    data_engineers = ["READ_FILES", "WRITE_FILES"]
    ml_engineers   = ["READ_FILES"]
  }
  model_privileges = {
    pipeline     = ["ALL_PRIVILEGES"]
    ml_engineers = ["EXECUTE", "APPLY_TAG"]
    viewers      = ["BROWSE"]
  }

  # Workspace object permissions (databricks_permissions), by object kind.
  policy_permissions = {
    pipeline       = "CAN_USE"
    data_engineers = "CAN_USE"
    ml_engineers   = "CAN_USE"
  }
  pool_permissions = {
    pipeline       = "CAN_ATTACH_TO"
    data_engineers = "CAN_ATTACH_TO"
    ml_engineers   = "CAN_ATTACH_TO"
  }
  # The pipeline owns the jobs, so they run as it.
  job_permissions = {
    pipeline       = "IS_OWNER"
    data_engineers = "CAN_MANAGE_RUN"
    ml_engineers   = "CAN_MANAGE_RUN"
    viewers        = "CAN_VIEW"
  }
  experiment_permissions = {
    pipeline       = "CAN_MANAGE"
    ml_engineers   = "CAN_MANAGE"
    data_engineers = "CAN_READ"
    viewers        = "CAN_READ"
  }
  secret_readers = ["pipeline", "data_engineers", "ml_engineers"]

  grants = merge(
    { catalog = { kind = "catalog", name = databricks_catalog.this.name, privileges = local.catalog_privileges } },
    { for key, privileges in local.schema_privileges : "schema/${key}" => { kind = "schema", name = databricks_schema.this[key].id, privileges = privileges } },
    { for key, privileges in local.volume_privileges : "volume/${key}" => { kind = "volume", name = databricks_volume.this[key].id, privileges = privileges } },
    { for key, location in databricks_external_location.this : "external_location/${key}" => { kind = "external_location", name = location.id, privileges = local.external_location_privileges } },
    { model = { kind = "model", name = databricks_registered_model.classifier.id, privileges = local.model_privileges } },
  )
  permissions = merge(
    { cluster_policy = { kind = "cluster_policy", id = var.cluster_policy_id, levels = local.policy_permissions } },
    { instance_pool = { kind = "instance_pool", id = var.instance_pool_id, levels = local.pool_permissions } },
    { for key, id in var.job_ids : "job/${key}" => { kind = "job", id = id, levels = local.job_permissions } },
    { experiment = { kind = "experiment", id = databricks_mlflow_experiment.training.id, levels = local.experiment_permissions } },
  )
}

# --- Identities -------------------------------------------------------------

# One Entra ID service principal per environment runs the pipeline: Dagster's
# Databricks jobs and the log shipper authenticate as it (AZURE_CLIENT_ID).
resource "azuread_application" "pipeline" {
  display_name = "${var.name_prefix}-pipeline"
}

resource "azuread_service_principal" "pipeline" {
  client_id = azuread_application.pipeline.client_id
}

resource "databricks_service_principal" "pipeline" {
  application_id = azuread_service_principal.pipeline.client_id
  display_name   = "${var.name_prefix}-pipeline"
  # Its job clusters are created under the cluster policy (CAN_USE below), nothing else.
  allow_cluster_create       = false
  allow_instance_pool_create = false
}

resource "databricks_group" "this" {
  for_each = local.groups

  display_name = "${var.name_prefix}-${each.value}"
}

data "databricks_user" "members" {
  for_each = toset(flatten(values(var.group_members)))

  user_name = each.key
}

resource "databricks_group_member" "this" {
  for_each = local.memberships

  group_id  = databricks_group.this[each.value.group].id
  member_id = data.databricks_user.members[each.value.user].id
}

resource "azurerm_role_assignment" "pipeline" {
  for_each = local.pipeline_roles

  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = azuread_service_principal.pipeline.object_id
}

resource "azurerm_role_assignment" "unity_catalog" {
  scope                = var.storage_account_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = var.access_connector_principal_id
}

# --- Workspace front end --------------------------------------------------

resource "databricks_workspace_conf" "this" {
  custom_config = {
    enableIpAccessLists = true
  }
}

# People and CI (allowed_ip_ranges) and the orchestrator (orchestrator_ip_ranges),
# which also submits Pipes jobs and talks to MLflow and Unity Catalog from outside the VNet.
resource "databricks_ip_access_list" "allowed" {
  label        = "${var.name_prefix}-allowed"
  list_type    = "ALLOW"
  ip_addresses = sort(distinct(concat(var.allowed_ip_ranges, var.orchestrator_ip_ranges)))

  depends_on = [databricks_workspace_conf.this]
}

# --- Unity Catalog ----------------------------------------------------------

resource "databricks_storage_credential" "lake" {
  name    = "${var.name_prefix}-lake"
  comment = "Access connector identity for the ${var.name_prefix} storage account."

  azure_managed_identity {
    access_connector_id = var.access_connector_id
  }

  depends_on = [azurerm_role_assignment.unity_catalog]
}

resource "databricks_external_location" "this" {
  for_each = var.container_urls

  name            = "${var.name_prefix}-${each.key}"
  url             = each.value
  credential_name = databricks_storage_credential.lake.name
}

# Isolated: the catalog is bound to this environment's workspace only. Its
# managed storage sits beside, not inside, the profile's lake_root, so path-based
# Delta tables never overlap Unity Catalog's managed files.
resource "databricks_catalog" "this" {
  name           = local.catalog_name
  storage_root   = "${var.container_urls.lake}/unity-catalog"
  isolation_mode = "ISOLATED"
  comment        = "rayml data, models and reports of ${var.name_prefix}."

  depends_on = [databricks_external_location.this]
}

resource "databricks_schema" "this" {
  for_each = local.schemas

  catalog_name = databricks_catalog.this.name
  name         = each.key
  comment      = each.value
}

resource "databricks_volume" "this" {
  for_each = local.volumes

  name             = each.key
  catalog_name     = databricks_catalog.this.name
  schema_name      = databricks_schema.this[each.value.schema].name
  volume_type      = each.value.location == null ? "MANAGED" : "EXTERNAL"
  storage_location = each.value.location

  depends_on = [databricks_external_location.this]
}

resource "databricks_registered_model" "classifier" {
  name         = "image_classifier"
  catalog_name = databricks_catalog.this.name
  schema_name  = databricks_schema.this["ml"].name
  comment      = "Champion and challenger image classifiers of ${var.name_prefix}."
}

# One authoritative grant list per securable.
resource "databricks_grants" "this" {
  for_each = local.grants

  catalog           = each.value.kind == "catalog" ? each.value.name : null
  schema            = each.value.kind == "schema" ? each.value.name : null
  volume            = each.value.kind == "volume" ? each.value.name : null
  external_location = each.value.kind == "external_location" ? each.value.name : null
  model             = each.value.kind == "model" ? each.value.name : null

  dynamic "grant" {
    for_each = each.value.privileges

    content {
      principal  = local.principals[grant.key]
      privileges = grant.value
    }
  }
}

# --- Workspace objects --------------------------------------------------------

resource "databricks_directory" "this" {
  path = local.workspace_dir
}

resource "databricks_mlflow_experiment" "training" {
  name              = "${local.workspace_dir}/image-classifier"
  artifact_location = var.storage_paths.mlflow
  description       = "Ray Tune searches of the image classifier (parent run per search, child run per trial)."

  depends_on = [databricks_directory.this]
}

resource "databricks_permissions" "this" {
  for_each = local.permissions

  cluster_policy_id = each.value.kind == "cluster_policy" ? each.value.id : null
  instance_pool_id  = each.value.kind == "instance_pool" ? each.value.id : null
  job_id            = each.value.kind == "job" ? each.value.id : null
  experiment_id     = each.value.kind == "experiment" ? each.value.id : null

  dynamic "access_control" {
    for_each = each.value.levels

    content {
      group_name             = access_control.key == "pipeline" ? null : local.principals[access_control.key]
      service_principal_name = access_control.key == "pipeline" ? local.principals.pipeline : null
      permission_level       = access_control.value
    }
  }
}

resource "databricks_secret_acl" "this" {
  for_each = toset(local.secret_readers)

  scope      = var.secret_scope_name
  principal  = local.principals[each.key]
  permission = "READ"
}
