package traceview

import "regexp"

// lineShape is every line Mermaid may emit after the first: a participant, an arrow, or a note,
// with text Mermaid reads as plain text.
var lineShape = regexp.MustCompile(`^    (` +
	`participant (User|Mattermost|Bridge|GitLab)( as [^#;<\n]*)?` +
	`|(User|Mattermost|Bridge|GitLab)(->>|-x |--x )(User|Mattermost|Bridge|GitLab): [^#;<\n]+` +
	`|Note over (User|Mattermost|Bridge|GitLab): [^#;<\n]+` +
	`)$`)
