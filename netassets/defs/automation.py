"""The one sensor that evaluates every asset's automation condition (``core.automation``)."""

from netassets.core.automation import automation_sensor

netassets_automation = automation_sensor()
