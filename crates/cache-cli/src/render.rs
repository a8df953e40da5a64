//! Rendering for people and for JSON: keys and values (text or hex), sizes, timestamps, and a
//! plain aligned table.

use std::time::{SystemTime, UNIX_EPOCH};

use cache_core::KeyDisplay;

/// `1 entry`, `2 entries`: a count with its noun, for notes.
pub(crate) fn count(number: u64, singular: &str, plural: &str) -> String {
    if number == 1 {
        format!("1 {singular}")
    } else {
        format!("{number} {plural}")
    }
}

/// Bytes as lower-case hex, in full, and back (`cache_core::keys`).
pub(crate) use cache_core::keys::{from_hex, hex};

/// Bytes as JSON shows them: the UTF-8 text when they are UTF-8 (JSON escapes control
/// characters), else `None` (null); the hex form is always given next to it.
pub(crate) fn text_or_none(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// A key (or value) for people: quoted text when printable, `0x` hex otherwise, shortened.
pub(crate) fn readable(bytes: &[u8]) -> String {
    KeyDisplay::new(bytes).to_string()
}

/// A size for people: `512 B`, `1.5 KiB`, `2.0 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Milliseconds since the Unix epoch (0 for a time before it).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

/// A time as RFC 3339 in UTC, to the second: `2026-11-03T12:00:05Z`.
pub(crate) fn timestamp(time: SystemTime) -> String {
    let seconds = unix_ms(time) / 1000;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Which side of its column a cell sits on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A table of text: a header row and rows, columns padded to their widest cell.
pub(crate) struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(cells);
    }

    /// The table as lines, two spaces between columns, no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|(name, _)| name.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        std::iter::once(&header)
            .chain(&self.rows)
            .map(|row| {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .zip(&self.columns)
                    .map(|((cell, width), (_, align))| match align {
                        Align::Left => format!("{cell:<width$}"),
                        Align::Right => format!("{cell:>width$}"),
                    })
                    .collect();
                cells.join("  ").trim_end().to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xAB, 0xFF]), "00abff");
        assert_eq!(from_hex("00abff"), Some(vec![0, 0xAB, 0xFF]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("é1"), None);
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(2 * 1024 * 1024 * 1024), "2.0 GiB");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(timestamp(leap_day), "2000-02-29T12:34:56Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(timestamp(later), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&[("TAG", Align::Left), ("ENTRIES", Align::Right)]);
        table.row(vec!["layout".to_owned(), "3".to_owned()]);
        table.row(vec!["m".to_owned(), "1200".to_owned()]);
        assert_eq!(
            table.render(),
            "TAG     ENTRIES\nlayout        3\nm          1200"
        );
    }
}
