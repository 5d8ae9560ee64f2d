"""The gateway's routes, one mixin per area, composed by :class:`gateway.service.GatewayService`."""
