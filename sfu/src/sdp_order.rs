//! Keeps the offerer's codec preference in our answers. str0m lists payload
//! types in its own configured order; browsers send the first codec of the
//! answer, so a client that prefers VP9 or AV1 (via `setCodecPreferences`)
//! would otherwise be made to send VP8. LiveKit clients state the codec they
//! want in `add_track`; that codec goes first for the track's m-line.

use std::collections::HashMap;

/// One media section of the offer: its payload types in order, and its msid track id.
#[derive(Default)]
struct OfferSection {
    pts: Vec<String>,
    track_id: Option<String>,
}

fn offer_sections(sdp: &str) -> HashMap<String, OfferSection> {
    let mut out = HashMap::new();
    for section in sdp.split("\r\nm=").skip(1) {
        let mut lines = section.split("\r\n");
        let pts = lines
            .next()
            .map(|m| m.split_whitespace().skip(3).map(str::to_string).collect())
            .unwrap_or_default();
        let mut s = OfferSection {
            pts,
            track_id: None,
        };
        let mut mid = None;
        for l in lines {
            if let Some(m) = l.strip_prefix("a=mid:") {
                mid = Some(m.trim().to_string());
            } else if let Some(msid) = l.strip_prefix("a=msid:") {
                s.track_id = msid.split_whitespace().nth(1).map(str::to_string);
            }
        }
        if let Some(mid) = mid {
            out.insert(mid, s);
        }
    }
    out
}

/// Codec name of each payload type in an answer section (`a=rtpmap:PT NAME/…`).
fn rtpmap(section: &str) -> HashMap<&str, String> {
    section
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|r| {
            let (pt, rest) = r.split_once(' ')?;
            let name = rest.split('/').next()?.to_ascii_lowercase();
            Some((pt, name))
        })
        .collect()
}

/// Rewrites the `m=` lines of `answer` so payload types follow the order they
/// had in `offer`, with the codec `preferred` names for the section's msid
/// track id (a client track id such as LiveKit's cid) moved first.
/// Anything else is left byte for byte.
pub fn follow_offer_order(
    offer: &str,
    answer: &str,
    preferred: &HashMap<String, String>,
) -> String {
    let wanted = offer_sections(offer);
    let sections: Vec<&str> = answer.split("\r\nm=").collect();
    let mut out = String::with_capacity(answer.len());
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\nm=");
        }
        if i == 0 {
            out.push_str(section);
            continue;
        }
        let mid = section
            .split("\r\n")
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(str::trim);
        let (mline, rest) = section.split_once("\r\n").unwrap_or((section, ""));
        let mut parts: Vec<&str> = mline.split(' ').collect();
        if let (Some(offered), true) = (mid.and_then(|m| wanted.get(m)), parts.len() > 3) {
            let names = rtpmap(rest);
            let first = offered
                .track_id
                .as_ref()
                .and_then(|t| preferred.get(t))
                .map(|c| c.to_ascii_lowercase());
            let mut pts: Vec<&str> = parts.split_off(3);
            pts.sort_by_key(|pt| {
                let pos = offered
                    .pts
                    .iter()
                    .position(|o| o == pt)
                    .unwrap_or(usize::MAX);
                let is_first = first
                    .as_deref()
                    .is_some_and(|c| names.get(pt).is_some_and(|n| n == c));
                (!is_first, pos)
            });
            parts.extend(pts);
        }
        out.push_str(&parts.join(" "));
        if !rest.is_empty() || section.contains("\r\n") {
            out.push_str("\r\n");
            out.push_str(rest);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_to_the_offer() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 98 96 45\r\na=mid:1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 45 98\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
        let fixed = follow_offer_order(offer, answer, &HashMap::new());
        assert!(fixed.contains(
            "m=video 9 UDP/TLS/RTP/SAVPF 98 96 45\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n"
        ));
        assert!(fixed.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"));
        assert_eq!(fixed.len(), answer.len());
    }

    #[test]
    fn leaves_unknown_sections_alone() {
        let answer = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        assert_eq!(
            follow_offer_order("v=0\r\n", answer, &HashMap::new()),
            answer
        );
    }

    #[test]
    fn preferred_codec_goes_first() {
        let offer =
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 98 45\r\na=mid:1\r\na=msid:s cid-1\r\n";
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 98 45\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:98 VP9/90000\r\na=rtpmap:45 AV1/90000\r\n";
        let prefer = HashMap::from([("cid-1".to_string(), "av1".to_string())]);
        let fixed = follow_offer_order(offer, answer, &prefer);
        assert!(
            fixed.contains("m=video 9 UDP/TLS/RTP/SAVPF 45 96 97 98\r\n"),
            "{fixed}"
        );
    }
}
