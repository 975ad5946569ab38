"""Learning where the model travels and the rows stay (issue 11, in progress): the travelling model
(Personal Health Train) and federated averaging. So far: the learners and their state as data
(`learners`, `state`); the strategies, the committee's secure sums and the commands come next."""
