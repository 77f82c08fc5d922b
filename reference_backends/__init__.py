"""The targets bundled with byoc: simaccel (a simulated accelerator), cpu (C) and cuda."""
