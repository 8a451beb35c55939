"""Runtime pieces every balloonlab process shares: clock, credentials, logging, serving."""
