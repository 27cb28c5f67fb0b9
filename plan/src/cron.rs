//! Crons (`clevercloud/cron.json`, the platform's Crons page): `M H d m w command` entries, in
//! UTC, run at their minute. The schedule's one parser and its one matcher, for `detect`
//! (which refuses a bad entry) and the scheduler (which runs them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One cron of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cron {
    /// `cron-0`, `cron-1`, ... in the file's order.
    pub name: String,
    /// The entry as written in `clevercloud/cron.json`.
    pub entry: String,
    /// Its five time fields, `M H d m w`.
    pub schedule: String,
    /// The command, `$ROOT` replaced by the application's directory: what `/bin/sh -c` runs.
    pub command: String,
}

/// A parsed schedule: the minutes, hours, days of the month, months and days of the week
/// (0 = Sunday) it runs at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    /// Both day fields restricted: cron runs when either matches.
    days_or: bool,
}

/// The fields, their names and ranges.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of the month", 1, 31),
    ("month", 1, 12),
    // 7 is Sunday too, as cron takes it.
    ("day of the week", 0, 7),
];

impl Schedule {
    /// Parses `M H d m w`; the error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{} time field(s) where cron takes 5 (minute hour day-of-month month day-of-week)",
                fields.len()
            ));
        }
        let mut sets = Vec::new();
        for (field, &(name, min, max)) in fields.iter().zip(FIELDS.iter()) {
            sets.push(field_set(field, name, min, max)?);
        }
        let mut weekdays = sets.pop().unwrap_or_default();
        if weekdays[7] {
            weekdays[0] = true;
        }
        weekdays.truncate(7);
        let months = sets.pop().unwrap_or_default();
        let days = sets.pop().unwrap_or_default();
        let hours = sets.pop().unwrap_or_default();
        let minutes = sets.pop().unwrap_or_default();
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_or: !fields[2].starts_with('*') && !fields[4].starts_with('*'),
        })
    }

    /// Whether it runs at this UTC minute.
    pub fn matches(&self, at: &Minute) -> bool {
        let day = self.days[at.day as usize];
        let weekday = self.weekdays[at.weekday as usize];
        let day_ok = if self.days_or {
            day || weekday
        } else {
            day && weekday
        };
        self.minutes[at.minute as usize]
            && self.hours[at.hour as usize]
            && self.months[at.month as usize]
            && day_ok
    }
}

/// One field: `*`, `N`, `N-M`, each optionally `/STEP`, joined by `,`. Indexed by value.
fn field_set(text: &str, name: &str, min: u32, max: u32) -> Result<Vec<bool>, String> {
    let mut set = vec![false; max as usize + 1];
    let bad = |why: String| format!("the {name} field `{text}` {why}");
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    bad(format!("has a step `{step}` that is not a positive number"))
                })?;
                (range, step)
            }
            None => (part, 1),
        };
        let number = |n: &str| -> Result<u32, String> {
            let value: u32 = n.parse().map_err(|_| {
                bad(format!(
                    "holds `{n}`, not a number (numbers only, from {min} to {max})"
                ))
            })?;
            if value < min || value > max {
                return Err(bad(format!("holds {value}, outside {min}-{max}")));
            }
            Ok(value)
        };
        let (first, last) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(bad(format!("has a range {a}-{b} that runs backwards")));
            }
            (a, b)
        } else {
            let a = number(range)?;
            // `N/STEP` runs from N to the end, as cron has it.
            (a, if step > 1 { max } else { a })
        };
        let mut value = first;
        while value <= last {
            set[value as usize] = true;
            value += step;
        }
    }
    Ok(set)
}

/// A UTC minute, as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Minute {
    /// Minutes since 1970-01-01T00:00Z: what orders them.
    pub since_epoch: i64,
    pub minute: u32,
    pub hour: u32,
    pub day: u32,
    pub month: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

impl Minute {
    /// The minute `since_epoch` minutes after 1970-01-01T00:00Z.
    pub fn from_epoch_minutes(since_epoch: i64) -> Minute {
        let days = since_epoch.div_euclid(24 * 60);
        let in_day = since_epoch.rem_euclid(24 * 60);
        let (_, month, day) = civil_from_days(days);
        Minute {
            since_epoch,
            minute: (in_day % 60) as u32,
            hour: (in_day / 60) as u32,
            day,
            month,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// `2026-11-30T21:05`, `2026-11-30 21:05:30Z`, ...: a UTC time to the minute (seconds and
    /// a `Z` are allowed and dropped).
    pub fn parse(text: &str) -> Option<Minute> {
        let text = text.trim().trim_end_matches('Z');
        let (date, time) = text.split_once(['T', ' '])?;
        let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
        let (y, m, day) = (d.next()??, d.next()??, d.next()??);
        let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
        let (h, min) = (t.next()??, t.next()??);
        if !(1..=12).contains(&m)
            || !(1..=31).contains(&day)
            || !(0..24).contains(&h)
            || !(0..60).contains(&min)
        {
            return None;
        }
        let days = days_from_civil(y, m as u32, day as u32);
        Some(Minute::from_epoch_minutes(days * 24 * 60 + h * 60 + min))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Minute {
        Minute::parse(text).unwrap()
    }

    #[test]
    fn utc_minutes_and_weekdays() {
        let m = at("2026-11-30T21:05:30Z");
        assert_eq!((m.month, m.day, m.hour, m.minute), (11, 30, 21, 5));
        assert_eq!(m.weekday, 1, "a Monday");
        assert_eq!(at("1970-01-01 00:00").since_epoch, 0);
        assert_eq!(at("2024-02-29T00:00").weekday, 4);
        assert_eq!(
            at("2026-03-01T00:00").since_epoch - at("2026-02-28T23:59").since_epoch,
            1
        );
        assert_eq!(Minute::parse("tomorrow"), None);
        assert_eq!(Minute::parse("2026-13-01T00:00"), None);
    }

    #[test]
    fn schedules_match_as_cron_does() {
        let every = Schedule::parse("* * * * *").unwrap();
        assert!(every.matches(&at("2026-11-30T21:05")));
        let five = Schedule::parse("5 * * * *").unwrap();
        assert!(five.matches(&at("2026-11-30T21:05")));
        assert!(!five.matches(&at("2026-11-30T21:06")));
        let steps = Schedule::parse("*/15 9-17 * * 1-5").unwrap();
        assert!(steps.matches(&at("2026-11-30T09:45")));
        assert!(!steps.matches(&at("2026-11-29T09:45")), "a Sunday");
        let sunday = Schedule::parse("0 0 * * 7").unwrap();
        assert!(sunday.matches(&at("2026-11-29T00:00")));
        // Both day fields: either.
        let either = Schedule::parse("0 0 1 * 1").unwrap();
        assert!(either.matches(&at("2026-11-30T00:00")));
        assert!(either.matches(&at("2026-12-01T00:00")));
        assert!(!either.matches(&at("2026-12-02T00:00")));
        let list = Schedule::parse("0,30 */6 * 1,7 *").unwrap();
        assert!(list.matches(&at("2026-07-04T18:30")));
        assert!(!list.matches(&at("2026-07-04T19:30")));
    }

    #[test]
    fn bad_schedules_say_which_field_and_why() {
        for (text, why) in [
            ("* * * *", "4 time field(s) where cron takes 5"),
            ("60 * * * *", "the minute field `60` holds 60, outside 0-59"),
            ("* 24 * * *", "the hour field `24` holds 24, outside 0-23"),
            (
                "* * 0 * *",
                "the day of the month field `0` holds 0, outside 1-31",
            ),
            (
                "* * * jan *",
                "the month field `jan` holds `jan`, not a number",
            ),
            ("*/0 * * * *", "the minute field `*/0` has a step `0`"),
            (
                "5-1 * * * *",
                "the minute field `5-1` has a range 5-1 that runs backwards",
            ),
        ] {
            let err = Schedule::parse(text).unwrap_err();
            assert!(err.starts_with(why), "{text}: {err}");
        }
    }
}
