package targets

import (
	"booted/internal/config"
)

// splitSel splits "ENV/ROLE".
var splitSel = config.SplitSelector
