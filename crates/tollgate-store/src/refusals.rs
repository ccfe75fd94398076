//! `refusals_daily`: what each gateway refused, added up per UTC day, team and reason.

use sqlx::Row;

use crate::{Result, Store};

/// Refusals of one team for one reason over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalCount {
    pub team: String,
    pub reason: String,
    pub requests: i64,
}

impl Store {
    /// Adds `counts` (team, reason, n) to `day` (`YYYY-MM-DD`, UTC), in one transaction.
    pub async fn add_refusals(&self, day: &str, counts: &[(String, String, u64)]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (team, reason, n) in counts {
            sqlx::query(
                "INSERT INTO refusals_daily (day, team, reason, requests) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (day, team, reason) \
                 DO UPDATE SET requests = refusals_daily.requests + excluded.requests",
            )
            .bind(day)
            .bind(team)
            .bind(reason)
            .bind(i64::try_from(*n).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Refusals on UTC days `from_day..=to_day`, by team and reason, most first.
    pub async fn refusals(&self, from_day: &str, to_day: &str) -> Result<Vec<RefusalCount>> {
        let rows = sqlx::query(
            "SELECT team, reason, CAST(SUM(requests) AS BIGINT) AS requests FROM refusals_daily \
             WHERE day >= $1 AND day <= $2 GROUP BY team, reason \
             ORDER BY SUM(requests) DESC, team, reason",
        )
        .bind(from_day)
        .bind(to_day)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RefusalCount {
                    team: r.try_get("team")?,
                    reason: r.try_get("reason")?,
                    requests: r.try_get("requests")?,
                })
            })
            .collect()
    }
}
