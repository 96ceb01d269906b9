package doctor

import (
	"fmt"
	"io"
	"strings"
)

// Print writes the report as an aligned list: status, name, what was seen, and the fix under
// it, in lines of at most 100 columns but for a word longer than that (a URL).
func Print(w io.Writer, r *Report) {
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Name))
	}
	indent := strings.Repeat(" ", 6+width+2)
	fmt.Fprintf(w, "ssobridge doctor: the bridge at %s\n\n", r.Bridge)
	for _, c := range r.Checks {
		for i, l := range wrapText(c.Detail, 100-len(indent)) {
			if i == 0 {
				fmt.Fprintf(w, "%-4s  %-*s  %s\n", c.Status, width, c.Name, l)
			} else {
				fmt.Fprintf(w, "%s%s\n", indent, l)
			}
		}
		if c.Fix != "" {
			for i, l := range wrapText(c.Fix, 100-len(indent)-5) {
				lead := "fix: "
				if i > 0 {
					lead = "     "
				}
				fmt.Fprintf(w, "%s%s%s\n", indent, lead, l)
			}
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d warnings, %d skipped.\n",
		r.Count(StatusPass), r.Count(StatusFail), r.Count(StatusWarn), r.Count(StatusSkip))
}

// wrapText breaks each line of text at spaces to fit width; a word longer than width (a URL)
// stays whole.
func wrapText(text string, width int) []string {
	var out []string
	for _, para := range strings.Split(text, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			switch {
			case line == "":
				line = word
			case len(line)+1+len(word) > width:
				out = append(out, line)
				line = word
			default:
				line += " " + word
			}
		}
		out = append(out, line)
	}
	return out
}
