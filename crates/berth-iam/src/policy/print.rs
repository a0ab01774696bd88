//! Writing a policy back as JSON: one canonical layout, so that
//! parse → print → parse gives the same document.

use super::ast::*;
use crate::json::write_string;

impl Policy {
    /// The document as compact JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push('{');
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
        };
        if let Some(v) = self.version {
            sep(&mut out);
            out.push_str("\"Version\":");
            write_string(&mut out, v.as_str());
        }
        if let Some(id) = &self.id {
            sep(&mut out);
            out.push_str("\"Id\":");
            write_string(&mut out, id);
        }
        sep(&mut out);
        out.push_str("\"Statement\":[");
        for (i, s) in self.statements.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            s.write_json(&mut out);
        }
        out.push_str("]}");
        out
    }
}

fn write_list(out: &mut String, values: &[String]) {
    if let [one] = values {
        write_string(out, one);
        return;
    }
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, v);
    }
    out.push(']');
}

impl Statement {
    fn write_json(&self, out: &mut String) {
        out.push('{');
        if let Some(sid) = &self.sid {
            out.push_str("\"Sid\":");
            write_string(out, sid);
            out.push(',');
        }
        out.push_str("\"Effect\":");
        write_string(out, self.effect.as_str());
        if let Some(p) = &self.principal {
            out.push_str(if p.negated {
                ",\"NotPrincipal\":"
            } else {
                ",\"Principal\":"
            });
            match &p.value {
                PrincipalValue::Star => out.push_str("\"*\""),
                PrincipalValue::Map(entries) => {
                    out.push('{');
                    for (i, (ty, values)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write_string(out, ty.as_str());
                        out.push(':');
                        write_list(out, values);
                    }
                    out.push('}');
                }
            }
        }
        out.push_str(if self.action.negated {
            ",\"NotAction\":"
        } else {
            ",\"Action\":"
        });
        write_list(out, &self.action.values);
        if let Some(r) = &self.resource {
            out.push_str(if r.negated {
                ",\"NotResource\":"
            } else {
                ",\"Resource\":"
            });
            write_list(out, &r.values);
        }
        if !self.conditions.is_empty() {
            out.push_str(",\"Condition\":{");
            for (i, c) in self.conditions.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, &c.operator.to_string());
                out.push_str(":{");
                for (j, (key, values)) in c.entries.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    if values.is_empty() {
                        out.push_str("[]");
                    } else {
                        write_list(out, values);
                    }
                }
                out.push('}');
            }
            out.push('}');
        }
        out.push('}');
    }
}
